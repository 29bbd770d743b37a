import type { Config } from '../../config.js';
import { TiktokClient } from './api-client.js';

const clients = new Map<string, TiktokClient>();

/** One client per (API base, app): read lazily because sandbox mode fills these in after listen. */
export function tiktokClient(config: Config): TiktokClient {
  const key = `${config.tiktokApiBase}|${config.tiktokAppId}|${config.tiktokAppSecret}|${config.tiktokTimeoutMs}`;
  let client = clients.get(key);
  if (!client) {
    client = new TiktokClient({ apiBase: config.tiktokApiBase, appId: config.tiktokAppId, appSecret: config.tiktokAppSecret, timeoutMs: config.tiktokTimeoutMs });
    clients.set(key, client);
  }
  return client;
}

/** The scopes dmgate asks for and needs (reference/tiktok-api.md §1.5). */
export const TIKTOK_SCOPES = ['user.info.basic', 'message.list.read', 'message.list.send', 'message.list.manage'];
export const TIKTOK_REQUIRED_SCOPES = ['message.list.read', 'message.list.send', 'message.list.manage'];
