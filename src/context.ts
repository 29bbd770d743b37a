import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Config } from './config.js';
import { Bus } from './core/bus.js';
import { SecretBox } from './core/crypto.js';
import { createLogger, type Logger } from './core/logger.js';
import { openDatabase, type Database } from './db/database.js';
import type { DestinationStream } from 'pino';
import { IngressPressure } from './ingest/pressure.js';
import { Metrics } from './http/metrics.js';
import { RecentSends } from './messaging/recent-sends.js';

/** Everything a feature needs, built once and passed in (no globals, so tests build their own). */
export interface AppContext {
  config: Config;
  database: Database;
  log: Logger;
  bus: Bus;
  box: SecretBox;
  clock: () => number;
  /** Set by the webhook ingress, read by in-process workers that should yield to it. */
  pressure: IngressPressure;
  metrics: Metrics;
  /** Sends recorded by this process: their TikTok echoes are acknowledged without being stored. */
  recentSends: RecentSends;
}

export interface ContextOptions {
  logDestination?: DestinationStream;
  clock?: () => number;
  migrate?: boolean;
}

export async function createContext(config: Config, opts: ContextOptions = {}): Promise<AppContext> {
  const log = createLogger(config.logLevel, opts.logDestination);
  const database = await openDatabase({
    databaseUrl: config.databaseUrl || undefined, dataDir: config.dataDir, migrate: opts.migrate,
    onWarning: (message) => log.warn(message), onNotice: (message) => log.info(message),
  });
  const bus = new Bus(log, database.pool);
  await bus.start();
  const box = new SecretBox(resolveSecretKey(config, log));
  const clock = opts.clock ?? Date.now;
  const ctx = { config, database, log, bus, box, clock, pressure: new IngressPressure(), recentSends: new RecentSends() } as AppContext;
  ctx.metrics = new Metrics(ctx);
  return ctx;
}

export async function closeContext(ctx: AppContext): Promise<void> {
  await ctx.bus.close();
  await ctx.database.close();
}

/** The generated secret key's file in the data directory. */
export const SECRET_KEY_FILE = 'secret.key';

/** DMGATE_SECRET_KEY, or a key generated once into the data directory (0600). */
function resolveSecretKey(config: Config, log: Logger): string {
  if (config.secretKey) return config.secretKey;
  const file = join(config.dataDir, SECRET_KEY_FILE);
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  mkdirSync(config.dataDir, { recursive: true });
  const key = randomBytes(32).toString('base64');
  writeFileSync(file, key + '\n', { mode: 0o600, flag: 'wx' });
  if (config.dialect === 'postgres') {
    log.warn({ file }, 'DMGATE_SECRET_KEY is not set: generated a key into the data directory; every process of a cluster needs the same key');
  }
  return key;
}

/** A secret kept in the data directory (generated on first use), e.g. the sandbox app secret. */
export function dataDirSecret(config: Config, name: string): string {
  const file = join(config.dataDir, name);
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  mkdirSync(config.dataDir, { recursive: true });
  const value = randomBytes(24).toString('base64url');
  try {
    writeFileSync(file, value + '\n', { mode: 0o600, flag: 'wx' });
    return value;
  } catch {
    return readFileSync(file, 'utf8').trim();
  }
}
