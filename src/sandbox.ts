import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { dataDirSecret, type AppContext } from './context.js';
import { createEmulator, type Emulator } from './emulator/index.js';
import { startConnect } from './accounts/connect.js';
import { registerTiktokWebhook } from './providers/tiktok/webhook-registration.js';
import { withAccessToken } from './accounts/tokens.js';
import { tiktokClient } from './providers/tiktok/provider.js';

export const SANDBOX_PREFIX = '/sandbox/tiktok';
export const SANDBOX_APP_ID = 'sandbox_app';
export const SANDBOX_BUSINESS = 'sandbox_shop';
/** Files of the sandbox in the data directory: its app secret, and the emulator's state. */
export const SANDBOX_SECRET_FILE = 'sandbox-app-secret';
export const SANDBOX_STATE_FILE = 'sandbox-emulator.json';

export interface Sandbox {
  /** Points the gateway at the mounted emulator and connects `sandbox_shop`, once listening. */
  wire(listenUrl: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * Sandbox mode: the emulator is mounted in this server, and everything else is the real thing —
 * the business is connected through the OAuth redirects, DMs arrive as signed webhooks.
 */
export async function startSandbox(ctx: AppContext, app: FastifyInstance): Promise<Sandbox> {
  const cfg = ctx.config;
  cfg.tiktokAppId = SANDBOX_APP_ID;
  cfg.tiktokAppSecret = cfg.tiktokAppSecret || dataDirSecret(cfg, SANDBOX_SECRET_FILE);
  const emulator: Emulator = createEmulator({
    appId: cfg.tiktokAppId, appSecret: cfg.tiktokAppSecret,
    statePath: join(cfg.dataDir, SANDBOX_STATE_FILE), logger: ctx.log.child({ component: 'emulator' }),
  });
  await app.register(emulator.plugin, { prefix: SANDBOX_PREFIX });

  return {
    async wire(listenUrl: string) {
      const local = listenUrl.replace('//0.0.0.0', '//127.0.0.1').replace('//[::]', '//127.0.0.1');
      cfg.tiktokApiBase = `${local}${SANDBOX_PREFIX}/open_api/v1.3/`;
      cfg.tiktokAuthUrl = `${cfg.publicUrl}${SANDBOX_PREFIX}/v2/auth/authorize`;
      await fetch(`${local}${SANDBOX_PREFIX}/_control/businesses`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: SANDBOX_BUSINESS }),
      });
      await registerTiktokWebhook(cfg, `${local}/webhooks/tiktok`);
      await ensureConnected(ctx, local);
      ctx.log.info({
        inbox: `${cfg.publicUrl}/`,
        create_api_key: 'npm run dmgate -- keys create --name me',
        send_test_dm: 'npm run dmgate -- sandbox dm --from alice --text "Is size M in stock?"',
        docs: `${cfg.publicUrl}/docs`,
      }, `dmgate sandbox is running: business @${SANDBOX_BUSINESS} is connected to the built-in TikTok emulator`);
    },
    close: () => emulator.close(),
  };
}

async function ensureConnected(ctx: AppContext, local: string): Promise<void> {
  const existing = await ctx.database.db.selectFrom('accounts').selectAll().where('provider', '=', 'tiktok').where('username', '=', SANDBOX_BUSINESS).executeTakeFirst();
  if (existing?.status === 'active') {
    try {
      await withAccessToken(ctx, existing.id, (t) => tiktokClient(ctx.config).getBusiness(t, existing.external_id));
      return;
    } catch {
      ctx.log.info('sandbox account token no longer valid at the emulator; connecting again');
    }
  }
  // The real flow: consent URL → emulator approves as sandbox_shop → our callback exchanges the code.
  const authorize = new URL(await startConnect(ctx));
  const consent = new URL(authorize.pathname + authorize.search, local);
  consent.searchParams.set('login_as', SANDBOX_BUSINESS);
  const approved = await fetch(consent, { redirect: 'manual' });
  const location = approved.headers.get('location');
  if (!location) throw new Error(`sandbox consent answered ${approved.status} without a redirect`);
  const callback = new URL(location);
  const res = await fetch(new URL(callback.pathname + callback.search, local), { headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`sandbox connect failed: ${res.status} ${await res.text()}`);
}
