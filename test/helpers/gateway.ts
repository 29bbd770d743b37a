import { Writable } from 'node:stream';
import { loadConfig, type Env, type Role } from '../../src/config.js';
import { serve, type RunningServer } from '../../src/server.js';
import { createApiKey } from '../../src/auth/api-keys.js';
import { startEmulator, type EmulatorOptions } from '../../src/emulator/index.js';
import { registerTiktokWebhook } from '../../src/providers/tiktok/webhook-registration.js';
import { SESSION_COOKIE } from '../../src/http/authenticate.js';
import { ERROR_STATUS, type ErrorCode } from '../../src/core/errors.js';
import { MIN_PASSWORD } from '../../src/auth/users.js';
import { freshStorage, type TestStorage } from './db.js';

export const APP_ID = 'test_app';
export const APP_SECRET = 'test_app_secret_0123456789';

/** Every log line the gateway wrote, for tests that check what must never be logged. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    cb();
  }
  get text(): string { return this.lines.join('\n'); }
}

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
 * The passwords a request body carries. (Shorter strings than a password may be are left out: they
 * could turn up in a log by chance, and the gateway refuses them anyway.)
 */
export function passwordsIn(body: unknown): string[] {
  if (!body || typeof body !== 'object') return [];
  return ['password', 'current_password', 'new_password'].map((field) => (body as Record<string, unknown>)[field])
    .filter((v): v is string => typeof v === 'string' && v.length >= MIN_PASSWORD);
}

/** Secrets an API answer hands out once: API keys and endpoint signing secrets (session cookies come as headers). */
const HANDED_OUT = /\b(?:dmg_[\w-]{16,}|whsec_[\w+/=]{16,})/g;

/**
 * Fails if a secret appears in the gateway's log: secrets are never logged (the README's promise),
 * so closing any test gateway looks for every one it knows (see startTestGateway).
 */
export function assertNoSecretsLogged(logs: LogCapture, secrets: Map<string, string>): void {
  const text = logs.text;
  const found = [...secrets].filter(([secret]) => text.includes(secret)).map(([, what]) => what);
  if (found.length) throw new Error(`secrets appear in the gateway's log: ${[...new Set(found)].join(', ')}`);
}

/** The TikTok tokens the gateway holds now (stored encrypted), in clear. */
export async function tokensStored(server: RunningServer): Promise<string[]> {
  const { database, box } = server.ctx;
  const rows = await database.db.selectFrom('accounts').select(['access_token_enc', 'refresh_token_enc']).execute();
  return rows.flatMap((r) => [r.access_token_enc, r.refresh_token_enc]).filter((x): x is string => Boolean(x)).map((x) => box.open(x));
}

/**
 * What is wrong with an error answer, against DESIGN §5's one shape:
 * `{ "error": { "code", "message", "request_id", "details" } }`, a code of the closed list, answered
 * with that code's status. Null when nothing is.
 */
export function errorShapeProblem(status: number, contentType: string | null, body: unknown): string | null {
  if (!contentType?.startsWith('application/json')) return `answered ${contentType ?? 'no content type'}, not JSON`;
  const error = (body as { error?: Record<string, unknown> } | null)?.error;
  if (!error || typeof error !== 'object') return 'no "error" object';
  const code = error.code as ErrorCode;
  if (typeof code !== 'string' || !(code in ERROR_STATUS)) return `code ${JSON.stringify(code)} is not in the closed list`;
  if (ERROR_STATUS[code] !== status) return `code ${code} goes with ${ERROR_STATUS[code]}, not ${status}`;
  if (typeof error.message !== 'string' || !error.message) return 'no message';
  if (typeof error.request_id !== 'string' || !error.request_id.startsWith('req_')) return 'no request_id';
  if (!error.details || typeof error.details !== 'object' || Array.isArray(error.details)) return 'details is not an object';
  const extra = Object.keys(error).filter((k) => !['code', 'message', 'request_id', 'details'].includes(k));
  return extra.length ? `fields beyond the shape: ${extra.join(', ')}` : null;
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
  // Every secret the test can know of, with what it is; checked against the log at close.
  const secrets = new Map<string, string>([[key, 'the API key'], [APP_SECRET, 'the TikTok app secret']]);
  // Every error answer the test saw through api() that is not in the documented shape; checked at close.
  const misshapen: string[] = [];
  const noteSecrets = (res: Response, text: string) => {
    for (const m of text.matchAll(HANDED_OUT)) secrets.set(m[0], m[0].startsWith('dmg_') ? 'an API key' : 'a signing secret');
    for (const c of res.headers.getSetCookie()) {
      const value = c.split(';')[0].split('=').slice(1).join('=');
      if (c.startsWith(`${SESSION_COOKIE}=`) && value) secrets.set(value, 'a session cookie');
    }
  };

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
      noteSecrets(res, text);
      // Passwords go the other way: what the test signs in or signs up with.
      for (const password of passwordsIn(body)) secrets.set(password, 'a password');
      let parsed: unknown = text;
      try { parsed = JSON.parse(text); } catch { /* not JSON */ }
      const problem = res.status >= 400 ? errorShapeProblem(res.status, res.headers.get('content-type'), parsed) : null;
      if (problem) misshapen.push(`${method} ${path} → ${res.status}: ${problem}`);
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
      if (value) secrets.set(value, what);
    },
    async close() {
      const { violations } = await gw.control<{ violations: Record<string, number> }>('stats');
      // (Unless the test closed the server itself: its database is gone with it.)
      const tokens = await tokensStored(server).catch(() => []);
      for (const t of tokens) secrets.set(t, 'a TikTok token');
      await server.close();
      await emu.close();
      if (!opts.storage) await storage.drop();
      assertNoViolations(violations);
      assertNoSecretsLogged(logs, secrets);
      if (misshapen.length) throw new Error(`error answers outside the documented shape (DESIGN §5):\n${misshapen.join('\n')}`);
    },
  };
  return gw;
}
