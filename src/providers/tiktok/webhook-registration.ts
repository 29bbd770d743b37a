import type { Config } from '../../config.js';
import { tiktokClient } from './provider.js';

/** Points the app's DIRECT_MESSAGE webhook at dmgate (`dmgate tiktok register-webhook`). */
export async function registerTiktokWebhook(config: Config, callbackUrl = `${config.publicUrl}/webhooks/tiktok`): Promise<string> {
  await tiktokClient(config).registerWebhook(callbackUrl);
  return callbackUrl;
}

/** The callback TikTok has on file, or null; used to warn at start when it is not ours. */
export async function currentTiktokWebhook(config: Config): Promise<string | null> {
  return tiktokClient(config).webhookCallback();
}
