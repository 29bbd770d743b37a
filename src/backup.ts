import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { ConfigError, type Config } from './config.js';
import { SECRET_KEY_FILE } from './context.js';
import { SQLITE_FILE } from './db/database.js';
import { SANDBOX_SECRET_FILE, SANDBOX_STATE_FILE } from './sandbox.js';

/**
 * `dmgate backup --to DIR`: a consistent copy of an SQLite data directory, safe while dmgate runs
 * (copying the files is not: the database lives in two files, and a write may land between the
 * copies). The database is copied with `VACUUM INTO`, one read transaction, so writers go on; the
 * copy is checked before the command succeeds. The keys go with it: without `secret.key` the
 * stored TikTok tokens and webhook secrets cannot be read (unless DMGATE_SECRET_KEY is set), and
 * a sandbox needs its emulator's state and app secret. Restoring is copying the files into an
 * empty data directory before dmgate starts.
 */

/** Files of the data directory that belong with the database, and whether they are secret. */
const COMPANIONS: [name: string, secret: boolean][] = [[SECRET_KEY_FILE, true], [SANDBOX_SECRET_FILE, true], [SANDBOX_STATE_FILE, false]];

/** Writes the backup into `to` (created; it must not hold anything yet) and returns the files written. */
export function backupDataDir(cfg: Config, to: string): string[] {
  if (cfg.dialect === 'postgres') {
    throw new ConfigError('the data is in PostgreSQL (DATABASE_URL): back it up with pg_dump, and keep DMGATE_SECRET_KEY with it');
  }
  const source = join(cfg.dataDir, SQLITE_FILE);
  if (!existsSync(source)) throw new ConfigError(`no database at ${source}: is DMGATE_DATA_DIR right?`);
  const target = resolve(to);
  if (target === cfg.dataDir) throw new ConfigError('--to must be another directory than the data directory');
  if (existsSync(target) && readdirSync(target).length > 0) throw new ConfigError(`${target} is not empty: back up into a new or empty directory`);
  mkdirSync(target, { recursive: true, mode: 0o700 });

  const copy = join(target, SQLITE_FILE);
  const db = new BetterSqlite3(source, { fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    db.prepare('vacuum into ?').run(copy);
  } finally {
    db.close();
  }
  const check = new BetterSqlite3(copy, { readonly: true, fileMustExist: true });
  try {
    const result = check.pragma('quick_check', { simple: true });
    if (result !== 'ok') throw new Error(`the copy failed its check (${String(result)}); the source may be damaged: run PRAGMA integrity_check on it`);
  } finally {
    check.close();
  }

  const written = [copy];
  for (const [name, secret] of COMPANIONS) {
    const from = join(cfg.dataDir, name);
    if (!existsSync(from)) continue;
    const dest = join(target, name);
    copyFileSync(from, dest);
    if (secret) chmodSync(dest, 0o600);
    written.push(dest);
  }
  return written;
}
