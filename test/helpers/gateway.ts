import { loadConfig, type Env, type Role } from '../../src/config.js';
import { serve, type RunningServer } from '../../src/server.js';
import { createApiKey } from '../../src/auth/api-keys.js';
import { startEmulator, type EmulatorOptions } from '../../src/emulator/index.js';
import { registerTiktokWebhook } from '../../src/providers/tiktok/webhook-registration.js';
import { AnswerAudit, LogCapture, tokensStored } from './audit.js';
import { freshStorage, type TestStorage } from './db.js';

export const APP_ID = 'test_app';
export const APP_SECRET = 'test_app_secret_0123456789';

export interface HttpResult<T = any> { status: number; headers: Headers; body: T }

export interface TestGateway {
  url: string;
  key: string;
  server: RunningServer;
  emulatorUrl: string;
  storage: TestStorage;
  logs: LogCapture;
  /** The environment the gateway was configured from (another process of the cluster starts from it). */
  env: Env;
  api<T = any>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<HttpResult<T>>;
  control<T = any>(path: string, body?: unknown): Promise<T>;
  /** Creates the business at the emulator and connects it through the real OAuth redirects. */
  connect(username: string, region?: string): Promise<{ id: string; external_id: string; status: string }>;
  /** Resolves when the gateway processed every inbound webhook it has received so far. */
  drain(timeoutMs?: number): Promise<void>;
  restart(): Promise<void>;
  /** A secret the test handled itself, not through api() (checked against the log at close, as those are). */
  keepSecret(value: string, what: string): void;
  close(): Promise<void>;
}

export interface TestGatewayOptions {
  env?: Env;
  emulator?: Partial<EmulatorOptions>;
  /** The gateway's clock (epoch ms); pass the same one as `emulator.clock` to move both through time. */
  clock?: () => number;
  /** Keep the storage (a restart test reuses it). */
  storage?: TestStorage;
  /** What the process runs (default: the configuration's, all). */
  role?: Role;
}

/**
 * Fails unless the emulator counted no rule violation. Closing a test gateway checks it: the gateway
 * must never send what TikTok would refuse, so the whole suite ends with none.
 */
export function assertNoViolations(violations: Record<string, number>): void {
  const seen = Object.entries(violations).filter(([, n]) => n > 0);
  if (seen.length) {
    throw new Error(`the emulator counted TikTok rule violations: ${seen.map(([rule, n]) => `${rule} ${n}`).join(', ')} (the gateway sent what TikTok refuses)`);
  }
}

export async function startTestGateway(opts: TestGatewayOptions = {}): Promise<TestGateway> {
  const storage = opts.storage ?? await freshStorage();
  const emu = await startEmulator({ appId: APP_ID, appSecret: APP_SECRET, webhookRetryDelaysMs: [100, 200, 400, 800, 1000], ...opts.emulator });
  const logs = new LogCapture();
  const env: Env = {
    DMGATE_PORT: '0', DMGATE_HOST: '127.0.0.1',
    DMGATE_DATA_DIR: storage.dataDir, DATABASE_URL: storage.databaseUrl,
    TIKTOK_APP_ID: APP_ID, TIKTOK_APP_SECRET: APP_SECRET,
    TIKTOK_API_BASE: `${emu.url}/open_api/v1.3/`, TIKTOK_AUTH_URL: `${emu.url}/v2/auth/authorize`,
    DMGATE_ALLOW_PRIVATE_WEBHOOKS: '1', DMGATE_LOG_LEVEL: 'info',
    DMGATE_DELIVERY_SCHEDULE: '0,0.2,0.4,0.8', DMGATE_POLL_INTERVAL_MS: '100', DMGATE_SEND_RETRY_SCHEDULE: '0.1,0.2,0.4,0.8',
    ...opts.env,
  };
  let server = await serve(loadConfig(env), { logDestination: logs, clock: opts.clock, role: opts.role });
  const { key } = await createApiKey(server.ctx.database, 'test');
  const audit = new AnswerAudit();
  audit.keep(key, 'the API key');
  audit.keep(APP_SECRET, 'the TikTok app secret');

  const register = () => registerTiktokWebhook(server.ctx.config, `${server.url}/webhooks/tiktok`);
  await register();

  const gw: TestGateway = {
    get url() { return server.url; },
    key, get server() { return server; }, emulatorUrl: emu.url, storage, logs, env,
    async api(method, path, body, headers = {}) {
      const res = await fetch(server.url + path, {
        method,
        headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try { parsed = JSON.parse(text); } catch { /* not JSON */ }
      audit.note(`${method} ${path}`, body, res, text, parsed);
      return { status: res.status, headers: res.headers, body: parsed as any };
    },
    async control(path, body) {
      const res = await fetch(`${emu.url}/_control/${path}`, body === undefined ? {} : {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
      });
      const out = await res.json() as any;
      if (res.status >= 400) throw new Error(`control ${path}: ${res.status} ${JSON.stringify(out)}`);
      return out;
    },
    async connect(username, region) {
      await gw.control('businesses', { username, ...(region ? { region } : {}) });
      const start = await fetch(`${server.url}/connect/tiktok`, { headers: { authorization: `Bearer ${key}` }, redirect: 'manual' });
      if (start.status !== 302) throw new Error(`connect answered ${start.status}: ${await start.text()}`);
      const authorize = new URL(start.headers.get('location')!);
      authorize.searchParams.set('login_as', username);
      const consent = await fetch(authorize, { redirect: 'manual' });
      const callback = consent.headers.get('location');
      if (!callback) throw new Error(`authorize answered ${consent.status} without a redirect`);
      const done = await fetch(callback, { redirect: 'manual', headers: { accept: 'application/json' } });
      const body = await done.json() as { account?: { id: string; external_id: string; status: string }; error?: unknown };
      if (!body.account) throw new Error(`callback failed: ${JSON.stringify(body)}`);
      return body.account;
    },
    async drain(timeoutMs = 10000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const stats = await gw.control<{ webhooks: { pending: number } }>('stats');
        const pending = await server.ctx.database.db.selectFrom('inbound_events').select((eb) => eb.fn.countAll<number>().as('n'))
          .where('status', '=', 'pending').executeTakeFirstOrThrow();
        if (stats.webhooks.pending === 0 && Number(pending.n) === 0) return;
        if (Date.now() > deadline) throw new Error(`not drained: emulator pending ${stats.webhooks.pending}, inbound pending ${pending.n}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async restart() {
      await server.close();
      server = await serve(loadConfig({ ...env, DMGATE_PORT: String(new URL(server.url).port) }), { logDestination: logs, clock: opts.clock, role: opts.role });
    },
    keepSecret(value, what) {
      audit.keep(value, what);
    },
    async close() {
      const { violations } = await gw.control<{ violations: Record<string, number> }>('stats');
      // (Unless the test closed the server itself: its database is gone with it.)
      for (const t of await tokensStored(server).catch(() => [])) audit.keep(t, 'a TikTok token');
      await server.close();
      await emu.close();
      if (!opts.storage) await storage.drop();
      assertNoViolations(violations);
      audit.check(logs);
    },
  };
  return gw;
}
