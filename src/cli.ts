#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline/promises';
import { ConfigError, loadConfig, loadDotEnv, type Config, type Role } from './config.js';
import { createApiKey } from './auth/api-keys.js';
import { createUser } from './auth/users.js';
import { openDatabase } from './db/database.js';
import { serve } from './server.js';
import { acquireServeLock } from './serve-lock.js';
import { registerTiktokWebhook } from './providers/tiktok/webhook-registration.js';
import { startConnect } from './accounts/connect.js';
import { closeContext, createContext } from './context.js';
import type { BackfillState } from './accounts/store.js';
import { SANDBOX_PREFIX } from './sandbox.js';
import { backupDataDir } from './backup.js';

/** How long a SIGTERM or SIGINT may take to close everything before the process exits anyway. */
const SHUTDOWN_TIMEOUT_MS = 25_000;

const USAGE = `dmgate — gateway and agent inbox for TikTok Business Messaging

Usage:
  dmgate serve [--role all|api|worker]        run the gateway (sandbox mode when TIKTOK_APP_ID is unset)
  dmgate migrate                              apply database migrations and exit
  dmgate emulator [--port N]                  run the TikTok emulator alone
  dmgate sandbox dm --from NAME --text TEXT   a simulated customer DMs the sandbox business
  dmgate keys create --name NAME              print a new API key
  dmgate users create --email E --role admin|agent [--password P]
  dmgate accounts connect                     print the URL that connects a TikTok Business account
  dmgate accounts list                        connected accounts with their status and token expiry
  dmgate accounts backfill --account ID [--days N]   read an account's recent conversations again (progress on stderr)
  dmgate tiktok register-webhook              point the TikTok app's DM webhook at DMGATE_PUBLIC_URL/webhooks/tiktok
  dmgate backup --to DIR                      copy the SQLite data directory (database and keys), safe while dmgate runs

Configuration is read from the environment and .env (see README).`;

function config(): Config {
  loadDotEnv();
  return loadConfig(process.env);
}

async function withDatabase<T>(cfg: Config, fn: (db: Awaited<ReturnType<typeof openDatabase>>) => Promise<T>): Promise<T> {
  const database = await openDatabase({ databaseUrl: cfg.databaseUrl || undefined, dataDir: cfg.dataDir, onNotice: (m) => console.error(m) });
  try { return await fn(database); } finally { await database.close(); }
}

/**
 * The password typed at a terminal (not echoed), or the first line of piped input. Input that ends
 * before a line would otherwise leave the question pending until Node exits, with status 0 and
 * no user created.
 */
async function readPassword(): Promise<string> {
  const noPassword = () => new ConfigError('no password given: pass --password or type it when asked');
  if (process.stdin.isTTY) return readHidden('Password: ', noPassword);
  const rl = createInterface({ input: process.stdin, terminal: false });
  try {
    for await (const line of rl) return line.trim();
    throw noPassword();
  } finally { rl.close(); }
}

function readHidden(prompt: string, onEnd: () => Error): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  stdin.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let typed = '';
    const finish = (err: Error | null) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err); else resolve(typed.trim());
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return finish(null);
        if (ch === '\u0003') return finish(new ConfigError('cancelled'));
        if (ch === '\u0004') return finish(typed ? null : onEnd());
        if (ch === '\u007f' || ch === '\b') typed = typed.slice(0, -1);
        else typed += ch;
      }
    };
    stdin.on('data', onData);
  });
}

function printSandboxBanner(url: string): void {
  console.error(`
  dmgate sandbox is ready: @sandbox_shop is connected to the built-in TikTok emulator.

    inbox      ${url}/
    API docs   ${url}/docs
    API key    npm run dmgate -- keys create --name me
    test DM    npm run dmgate -- sandbox dm --from alice --text "Is size M in stock?"
`);
}

async function accountsList(cfg: Config): Promise<number> {
  await withDatabase(cfg, async (database) => {
    const rows = await database.db.selectFrom('accounts').select(['id', 'username', 'status', 'token_expires_at', 'status_reason']).orderBy('id').execute();
    if (!rows.length) console.error('no accounts yet: connect one with "dmgate accounts connect"');
    for (const r of rows) {
      const expiry = r.token_expires_at ? new Date(r.token_expires_at).toISOString() : '-';
      console.log([r.id, r.username ? '@' + r.username : '-', r.status, expiry, r.status !== 'active' && r.status_reason ? r.status_reason : ''].join('\t').trimEnd());
    }
  });
  return 0;
}

/**
 * Runs an account's backfill in this process (or follows the server's run of it): a progress bar
 * on a terminal, a line per step otherwise, both on stderr; the final state as JSON on stdout.
 */
async function accountsBackfill(args: string[], cfg: Config): Promise<number> {
  const { values } = parseArgs({ args, options: { account: { type: 'string' }, days: { type: 'string' } } });
  if (!values.account) throw new ConfigError('usage: dmgate accounts backfill --account ID [--days N]');
  const days = values.days === undefined ? undefined : Number(values.days);
  if (days !== undefined && (!Number.isInteger(days) || days < 1 || days > 90)) throw new ConfigError('--days must be an integer from 1 to 90');
  const { requestBackfill, runBackfill, backfillState } = await import('./accounts/backfill.js');
  const { pino } = await import('pino');
  const ctx = await createContext({ ...cfg, logLevel: cfg.logLevel === 'info' ? 'warn' : cfg.logLevel }, { logDestination: pino.destination(2) });
  const tty = process.stderr.isTTY;
  let lastLine = '';
  const show = (s: BackfillState) => {
    const total = s.conversations_total;
    const head = s.status === 'queued' ? 'waiting' : s.status === 'running' && total === null ? 'listing conversations' : s.status;
    const counts = `${s.conversations_done}/${total ?? '?'} conversations, ${s.messages} new messages`;
    if (tty) {
      const width = 30;
      const filled = total ? Math.round((s.conversations_done / Math.max(1, total)) * width) : 0;
      process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${counts} · ${head}\x1b[K`);
    } else {
      const line = `backfill ${head}: ${counts}`;
      if (line !== lastLine) console.error(line);
      lastLine = line;
    }
  };
  try {
    let state: BackfillState | null = await requestBackfill(ctx, values.account, days);
    show(state);
    if (!cfg.sandbox) state = await runBackfill(ctx, values.account, { onProgress: show });
    // Another process runs it (or the sandbox server, which owns the emulator): follow its progress,
    // and take the job over if that process goes away (its lease lapses).
    const waitingSince = Date.now();
    let lastTry = Date.now();
    while (!state || state.status === 'queued' || state.status === 'running') {
      await new Promise((r) => setTimeout(r, 250));
      if (!cfg.sandbox && Date.now() - lastTry > 2000) {
        lastTry = Date.now();
        const mine = await runBackfill(ctx, values.account, { onProgress: show });
        if (mine) { state = mine; continue; }
      }
      const row = await ctx.database.db.selectFrom('accounts').select('backfill').where('id', '=', values.account).executeTakeFirstOrThrow();
      state = backfillState(row);
      if (state) show(state);
      if (state?.status === 'queued' && Date.now() - waitingSince > 15000) {
        if (tty) process.stderr.write('\n');
        console.error('the backfill is queued but no dmgate worker picked it up: start the server (dmgate serve) and it will run');
        return 1;
      }
    }
    if (tty) process.stderr.write('\n');
    if (state.status === 'failed') console.error(`backfill failed: ${state.error}`);
    console.log(JSON.stringify(state));
    return state.status === 'done' ? 0 : 1;
  } finally {
    await closeContext(ctx);
  }
}

async function main(argv: string[]): Promise<number> {
  const [cmd, sub, ...rest] = argv;
  switch (cmd) {
    case 'serve': {
      const { values } = parseArgs({ args: argv.slice(1), options: { role: { type: 'string', default: 'all' } } });
      const role = values.role as Role;
      if (!['all', 'api', 'worker'].includes(role)) throw new ConfigError('--role must be all, api or worker');
      const cfg = config();
      const release = cfg.dialect === 'sqlite' ? acquireServeLock(cfg.dataDir) : () => undefined;
      const server = await serve({ ...cfg, role });
      server.ctx.log.info({ url: server.url, role, database: cfg.dialect, sandbox: cfg.sandbox }, 'dmgate is listening');
      if (cfg.sandbox) printSandboxBanner(server.ctx.config.publicUrl);
      const stop = async (signal: string) => {
        server.ctx.log.info({ signal }, 'shutting down');
        // Whatever was acknowledged is stored, and a reply cut off mid-send is recovered at the
        // next start: a shutdown that hangs can end without losing anything, and must end before
        // a supervisor's own deadline (Kubernetes waits 30 s) so that the culprit gets named.
        const deadline = setTimeout(() => {
          void server.closing().catch(() => null).then((what) => {
            console.error(`dmgate: shutdown did not finish within ${SHUTDOWN_TIMEOUT_MS / 1000} s (still waiting for ${what ?? 'nothing'}); exiting`);
            release();
            process.exit(1);
          });
        }, SHUTDOWN_TIMEOUT_MS);
        const closed = await server.close().then(() => true, (err: unknown) => {
          console.error('dmgate: shutdown failed:', err);
          return false;
        });
        clearTimeout(deadline);
        release();
        process.exit(closed ? 0 : 1);
      };
      process.once('SIGINT', () => void stop('SIGINT'));
      process.once('SIGTERM', () => void stop('SIGTERM'));
      return -1;
    }
    case 'migrate': {
      await withDatabase(config(), async () => undefined);
      console.error('migrations applied');
      return 0;
    }
    case 'emulator': {
      const { values } = parseArgs({ args: argv.slice(1), options: { port: { type: 'string', default: '4100' }, host: { type: 'string', default: '127.0.0.1' } } });
      loadDotEnv();
      const { startEmulator } = await import('./emulator/index.js');
      const appId = process.env.TIKTOK_APP_ID || 'sandbox_app';
      const appSecret = process.env.TIKTOK_APP_SECRET || 'emulator_secret';
      const port = Number(values.port);
      if (!/^\d{1,5}$/.test(values.port!) || port > 65535) throw new ConfigError(`--port must be an integer from 0 to 65535, got "${values.port}"`);
      const emu = await startEmulator({ appId, appSecret, port, host: values.host });
      console.error(`TikTok emulator on ${emu.url} (app id ${appId}); API ${emu.url}/open_api/v1.3/, control ${emu.url}/_control/`);
      // A stop is an exit, not a signal's death: 0 once closed (as `serve` does, 1 when closing
      // failed), after which Node writes what it was asked to at exit (--cpu-prof).
      const stop = () => void emu.close().then(() => process.exit(0), (err: unknown) => {
        console.error('dmgate: emulator shutdown failed:', err);
        process.exit(1);
      });
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      return -1;
    }
    case 'sandbox': {
      if (sub !== 'dm') break;
      const { values } = parseArgs({ args: rest, options: { from: { type: 'string' }, text: { type: 'string' }, type: { type: 'string' }, url: { type: 'string' }, business: { type: 'string' } } });
      if (!values.from || (!values.text && !values.type)) throw new ConfigError('usage: dmgate sandbox dm --from NAME --text TEXT');
      const cfg = config();
      const base = values.url ?? `http://127.0.0.1:${cfg.port}`;
      const res = await fetch(`${base}${SANDBOX_PREFIX}/_control/dm`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ from: values.from, text: values.text, type: values.type, business: values.business }),
      }).catch((err: Error) => { throw new Error(`no sandbox server answered at ${base} (${err.message}); start it with npm start`); });
      const body = await res.text();
      if (!res.ok) throw new Error(`the sandbox refused the DM: ${res.status} ${body}`);
      console.log(body);
      return 0;
    }
    case 'keys': {
      if (sub !== 'create') break;
      const { values } = parseArgs({ args: rest, options: { name: { type: 'string' } } });
      if (!values.name) throw new ConfigError('usage: dmgate keys create --name NAME');
      const key = await withDatabase(config(), (db) => createApiKey(db, values.name!));
      console.log(key.key);
      return 0;
    }
    case 'users': {
      if (sub !== 'create') break;
      const { values } = parseArgs({ args: rest, options: { email: { type: 'string' }, role: { type: 'string', default: 'agent' }, password: { type: 'string' }, name: { type: 'string' } } });
      if (!values.email || !['admin', 'agent'].includes(values.role!)) throw new ConfigError('usage: dmgate users create --email E --role admin|agent [--password P]');
      const password = values.password ?? await readPassword();
      const user = await withDatabase(config(), (db) => createUser(db, { email: values.email!, role: values.role as 'admin' | 'agent', password, name: values.name ?? null }));
      console.log(user.id);
      return 0;
    }
    case 'accounts': {
      if (sub === 'backfill') return accountsBackfill(rest, config());
      if (sub === 'list') return accountsList(config());
      if (sub !== 'connect') break;
      const cfg = config();
      if (cfg.sandbox) throw new ConfigError('sandbox mode connects sandbox_shop by itself; set TIKTOK_APP_ID and TIKTOK_APP_SECRET to connect real accounts');
      const ctx = await createContext(cfg);
      try {
        console.log(await startConnect(ctx));
        console.error('Open this URL in a browser signed in to the TikTok Business account (valid 10 minutes).');
      } finally { await closeContext(ctx); }
      return 0;
    }
    case 'tiktok': {
      if (sub !== 'register-webhook') break;
      const cfg = config();
      if (cfg.sandbox) throw new ConfigError('sandbox mode wires its webhook by itself; set TIKTOK_APP_ID and TIKTOK_APP_SECRET first');
      const url = await registerTiktokWebhook(cfg);
      console.log(url);
      return 0;
    }
    case 'backup': {
      const { values } = parseArgs({ args: argv.slice(1), options: { to: { type: 'string' } } });
      if (!values.to) throw new ConfigError('usage: dmgate backup --to DIR');
      const files = backupDataDir(config(), values.to);
      for (const f of files) console.error(`wrote ${f}`);
      console.error('Restore: stop dmgate, copy these files into an empty DMGATE_DATA_DIR, start it.');
      return 0;
    }
    case undefined: case 'help': case '--help': case '-h':
      console.log(USAGE);
      return 0;
  }
  console.error(USAGE);
  return 2;
}

main(process.argv.slice(2)).then((code) => {
  if (code >= 0) process.exit(code);
}, (err: unknown) => {
  console.error(`dmgate: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(err instanceof ConfigError ? 2 : 1);
});
