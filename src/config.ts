import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve } from 'node:path';

/**
 * The one configuration schema (DESIGN §7). Everything the process reads from its environment is
 * declared here and parsed once; the rest of the code receives a typed Config.
 */
type Parser<T> = (raw: string, name: string) => T;

const str: Parser<string> = (raw) => raw;
const int = (min: number, max: number): Parser<number> => (raw, name) => {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  return n;
};
const bool: Parser<boolean> = (raw, name) => {
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off|)$/i.test(raw)) return false;
  throw new ConfigError(`${name} must be 1 or 0, got "${raw}"`);
};
const url: Parser<string> = (raw, name) => {
  try { new URL(raw); } catch { throw new ConfigError(`${name} must be an absolute URL, got "${raw}"`); }
  return raw;
};
const oneOf = <T extends string>(...values: T[]): Parser<T> => (raw, name) => {
  if (!(values as string[]).includes(raw)) throw new ConfigError(`${name} must be one of ${values.join(', ')}, got "${raw}"`);
  return raw as T;
};
const seconds: Parser<number[]> = (raw, name) => {
  const list = raw.split(',').map((s) => Number(s.trim()));
  if (!list.length || list.some((n) => !Number.isFinite(n) || n < 0)) throw new ConfigError(`${name} must be a comma-separated list of seconds, got "${raw}"`);
  return list;
};
const list: Parser<string[]> = (raw) => raw.split(',').map((s) => s.trim()).filter(Boolean);
const PROXY_PRESETS = ['loopback', 'linklocal', 'uniquelocal'];
/** Which peers may tell the client's address (X-Forwarded-For): all, none, or addresses, CIDR ranges and presets. */
const trustProxy: Parser<boolean | string[]> = (raw, name) => {
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off|none)$/i.test(raw)) return false;
  const entries = list(raw, name);
  const bad = entries.filter((e) => !PROXY_PRESETS.includes(e) && !isIP(e.replace(/\/\d{1,3}$/, '')));
  if (bad.length) throw new ConfigError(`${name} must be true, false, or addresses, CIDR ranges and ${PROXY_PRESETS.join('/')}; got "${bad.join(', ')}"`);
  return entries;
};

export class ConfigError extends Error {}

const WINDOW_POLICIES = ['tiktok_48h_10', 'tiktok_48h_10_then_unlimited', 'tiktok_48h_10_plus_3'] as const;
export type WindowPolicyName = (typeof WINDOW_POLICIES)[number];

const schema = {
  port: ['DMGATE_PORT', int(0, 65535), 3000],
  host: ['DMGATE_HOST', str, '127.0.0.1'],
  dataDir: ['DMGATE_DATA_DIR', str, './data'],
  databaseUrl: ['DATABASE_URL', str, ''],
  secretKey: ['DMGATE_SECRET_KEY', str, ''],
  publicUrl: ['DMGATE_PUBLIC_URL', str, ''],
  logLevel: ['DMGATE_LOG_LEVEL', oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'), 'info'],
  sandbox: ['DMGATE_SANDBOX', bool, false],
  allowPrivateWebhooks: ['DMGATE_ALLOW_PRIVATE_WEBHOOKS', bool, false],
  /**
   * X-Forwarded-For and -Host are believed only from these peers. By default a reverse proxy on this
   * host or a private network: a client on the internet talking to dmgate directly cannot pick the
   * address that sign-in throttling counts failures by.
   */
  trustProxy: ['DMGATE_TRUST_PROXY', trustProxy, 'loopback,linklocal,uniquelocal'],
  tiktokAppId: ['TIKTOK_APP_ID', str, ''],
  tiktokAppSecret: ['TIKTOK_APP_SECRET', str, ''],
  tiktokApiBase: ['TIKTOK_API_BASE', url, 'https://business-api.tiktok.com/open_api/v1.3/'],
  tiktokAuthUrl: ['TIKTOK_AUTH_URL', url, 'https://www.tiktok.com/v2/auth/authorize'],
  tiktokSignatureToleranceS: ['DMGATE_TIKTOK_SIGNATURE_TOLERANCE', int(1, 86400 * 3), 300],
  tiktokWindowPolicy: ['DMGATE_TIKTOK_WINDOW_POLICY', oneOf(...WINDOW_POLICIES), 'tiktok_48h_10'],
  tiktokQps: ['DMGATE_TIKTOK_QPS', int(1, 1000), 10],
  /**
   * How long a TikTok API call may take. At most 15 s: an echo that overtakes its send's answer waits
   * 20 s for it (ingest/apply.ts).
   */
  tiktokTimeoutMs: ['DMGATE_TIKTOK_TIMEOUT_MS', int(100, 15000), 15000],
  tiktokDailyCap: ['DMGATE_TIKTOK_DAILY_CAP', int(1, 100000), 200],
  tiktokRestrictedRegions: ['DMGATE_TIKTOK_RESTRICTED_REGIONS', list,
    'AT,BE,BG,HR,CY,CZ,DK,EE,FI,FR,DE,GR,HU,IS,IE,IT,LV,LI,LT,LU,MT,NL,NO,PL,PT,RO,SK,SI,ES,SE,CH,GB'],
  webhookMaxBytes: ['DMGATE_WEBHOOK_MAX_BYTES', int(1024, 64 * 1024 * 1024), 1024 * 1024],
  deliverySchedule: ['DMGATE_DELIVERY_SCHEDULE', seconds, '0,5,300,1800,7200,18000,36000,36000'],
  deliveryTimeoutMs: ['DMGATE_DELIVERY_TIMEOUT_MS', int(100, 120000), 15000],
  deliveryConcurrency: ['DMGATE_DELIVERY_CONCURRENCY', int(1, 1024), 64],
  deliveryPerEndpoint: ['DMGATE_DELIVERY_PER_ENDPOINT', int(1, 256), 8],
  pollIntervalMs: ['DMGATE_POLL_INTERVAL_MS', int(10, 60000), 1000],
  sendRetrySchedule: ['DMGATE_SEND_RETRY_SCHEDULE', seconds, '1,5,30,120,600'],
  responseSlaHours: ['DMGATE_RESPONSE_SLA_HOURS', int(1, 720), 12],
  /** The token keeper refreshes an account's access token this long before it expires (src/accounts/token-keeper.ts). */
  tokenRefreshAheadS: ['DMGATE_TOKEN_REFRESH_AHEAD', int(1, 7 * 86400), 3600],
  /** How often the keeper asks TikTok (token_info) whether each account's token still works; 0 turns it off. */
  tokenCheckIntervalS: ['DMGATE_TOKEN_CHECK_INTERVAL', int(0, 7 * 86400), 900],
  /** Days of conversations read on connect (TikTok keeps 90); 0 turns the backfill on connect off. */
  backfillDays: ['DMGATE_BACKFILL_DAYS', int(0, 90), 90],
  /** Days the raw webhooks, the event log and webhook deliveries are kept (src/retention.ts); 0 keeps them all. */
  retentionDays: ['DMGATE_RETENTION_DAYS', int(0, 36500), 0],
} as const;

type Schema = typeof schema;
type ParsedOf<P> = P extends Parser<infer T> ? T : never;
type Parsed = { -readonly [K in keyof Schema]: ParsedOf<Schema[K][1]> };

export type Role = 'all' | 'api' | 'worker';

export interface Config extends Parsed {
  /** Absolute data directory. */
  dataDir: string;
  /** Sandbox mode: no TikTok app configured, or DMGATE_SANDBOX=1. */
  sandbox: boolean;
  role: Role;
  dialect: 'sqlite' | 'postgres';
}

export type Env = Record<string, string | undefined>;

/** Parses an environment (process.env by default in the entry points; a plain object in tests). */
export function loadConfig(env: Env, overrides: Partial<Config> = {}): Config {
  const out: Record<string, unknown> = {};
  for (const [key, [name, parse, dflt]] of Object.entries(schema) as [string, [string, Parser<unknown>, unknown]][]) {
    const raw = env[name];
    out[key] = raw === undefined || raw === '' ? (typeof dflt === 'string' ? parse(dflt, name) : dflt) : parse(raw, name);
  }
  const cfg = out as unknown as Config;
  cfg.dataDir = resolve(cfg.dataDir);
  cfg.sandbox = cfg.sandbox || !cfg.tiktokAppId;
  if (cfg.sandbox) cfg.allowPrivateWebhooks = true;
  cfg.role = 'all';
  cfg.dialect = cfg.databaseUrl ? 'postgres' : 'sqlite';
  if (cfg.databaseUrl && !/^postgres(ql)?:\/\//.test(cfg.databaseUrl)) {
    throw new ConfigError(`DATABASE_URL must be a postgres:// URL, got "${cfg.databaseUrl.replace(/\/\/[^@]*@/, '//***@')}"`);
  }
  if (!cfg.sandbox && !cfg.tiktokAppSecret) throw new ConfigError('TIKTOK_APP_SECRET is required when TIKTOK_APP_ID is set');
  Object.assign(cfg, overrides);
  if (!cfg.publicUrl) cfg.publicUrl = `http://localhost:${cfg.port}`;
  cfg.publicUrl = cfg.publicUrl.replace(/\/+$/, '');
  return cfg;
}

/** Reads `.env` from the working directory into process.env (real environment variables win). */
export function loadDotEnv(path = '.env'): void {
  if (!existsSync(path)) return;
  const before = { ...process.env };
  process.loadEnvFile(path);
  Object.assign(process.env, before);
}
