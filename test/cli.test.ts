import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import { freePort } from './helpers/scratch.js';
import { freshStorage, TEST_DB, type TestStorage } from './helpers/db.js';
import { startSink, type Sink } from './helpers/sink.js';
import { startTestGateway } from './helpers/gateway.js';
import { customerWrites } from './helpers/outbound.js';

function run(args: string[], env: NodeJS.ProcessEnv, input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { env, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    if (input !== undefined) c.stdin!.end(input);
    let stdout = '';
    let stderr = '';
    c.stdout!.on('data', (d) => (stdout += d));
    c.stderr!.on('data', (d) => (stderr += d));
    c.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** The README's tour, through the real command line: sandbox, key, endpoint, DM, verified event. */
describe('command line and sandbox mode', () => {
  let storage: TestStorage;
  let server: ChildProcess | null = null;
  let sink: Sink;

  let stderr = '';

  afterAll(async () => {
    if (server && server.exitCode === null) {
      const exited = new Promise<number | null>((r) => server!.once('exit', (code) => r(code)));
      server.kill('SIGTERM');
      // A clean stop, well inside the hook's time: a shutdown that hangs exits 1 after 25 s, naming what it waited for.
      expect(await exited, `dmgate serve did not stop cleanly on SIGTERM; its stderr ends:\n${stderr.slice(-4000)}`).toBe(0);
    }
    await sink?.close();
    await storage?.drop();
  });

  it('runs the sandbox tour end to end', async () => {
    storage = await freshStorage();
    sink = await startSink();
    const port = await freePort();
    const env = { ...process.env, DMGATE_PORT: String(port), DMGATE_DATA_DIR: storage.dataDir, DATABASE_URL: storage.databaseUrl, DMGATE_LOG_LEVEL: 'warn', TIKTOK_APP_ID: '', TIKTOK_APP_SECRET: '' };
    const base = `http://127.0.0.1:${port}`;
    server = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    server.stderr!.on('data', (d) => (stderr += d));
    for (let i = 0; i < 300 && !stderr.includes('sandbox is ready'); i++) await new Promise((r) => setTimeout(r, 100));
    expect(stderr).toContain('dmgate sandbox is ready');

    if (TEST_DB === 'sqlite') {
      const second = await run(['serve'], { ...env, DMGATE_PORT: String(await freePort()) });
      expect(second.code).not.toBe(0);
      expect(second.stderr).toMatch(/another dmgate server .* is serving/);
    }

    const key = await run(['keys', 'create', '--name', 'tour'], env);
    expect(key.code).toBe(0);
    expect(key.stdout.trim()).toMatch(/^dmg_[A-Za-z0-9_-]{20,}$/);
    const auth = { authorization: `Bearer ${key.stdout.trim()}` };

    const accounts = await (await fetch(`${base}/v1/accounts`, { headers: auth })).json() as { data: { username: string; status: string }[] };
    expect(accounts.data).toEqual([expect.objectContaining({ username: 'sandbox_shop', status: 'active' })]);

    const ep = await fetch(`${base}/v1/webhook-endpoints`, {
      method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ url: `${sink.url}/hook`, events: ['message.received'] }),
    });
    expect(ep.status).toBe(201);
    const { signing_secret: secret } = await ep.json() as { signing_secret: string };

    const dm = await run(['sandbox', 'dm', '--from', 'alice', '--text', 'size M?'], env);
    expect(dm.code).toBe(0);
    await sink.waitFor(1, 15000);
    const req = sink.requests[0];
    const event = new Webhook(secret).verify(req.body, {
      'webhook-id': String(req.headers['webhook-id']), 'webhook-timestamp': String(req.headers['webhook-timestamp']), 'webhook-signature': String(req.headers['webhook-signature']),
    }) as Record<string, any>;
    expect(event).toMatchObject({ event: 'message.received', provider: 'tiktok', text: 'size M?', contact: { username: 'alice' } });
    for (const field of ['account_id', 'from', 'timestamp', 'message_id', 'conversation_id', 'contact']) expect(event[field]).toBeTruthy();

    const openapi = await (await fetch(`${base}/openapi.json`)).json() as { openapi: string; paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
    expect(openapi.openapi).toBe('3.1.0');
    expect(Object.keys(openapi.paths)).toEqual(expect.arrayContaining(['/webhooks/tiktok', '/v1/webhook-endpoints', '/v1/conversations/{id}']));
    // A database that cannot be reached is answered 503 unavailable: documented where it can happen.
    for (const [path, method] of [['/v1/messages', 'post'], ['/v1/conversations/{id}', 'get'], ['/webhooks/tiktok', 'post']]) {
      expect(Object.keys(openapi.paths[path][method].responses)).toContain('503');
    }
    expect((await fetch(`${base}/docs`)).status).toBeLessThan(400);
    expect((await fetch(`${base}/metrics`)).status).toBe(200);
  }, 120000);

  it('runs the emulator alone until it is told to stop, then exits cleanly', async () => {
    const port = await freePort();
    const emu = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'emulator', '--port', String(port)], { env: process.env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    emu.stderr!.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((r) => emu.once('exit', (code) => r(code)));
    for (let i = 0; i < 300 && !err.includes('TikTok emulator on'); i++) await new Promise((r) => setTimeout(r, 100));
    expect((await fetch(`http://127.0.0.1:${port}/_control/stats`)).status).toBe(200);
    emu.kill('SIGTERM');
    expect(await exited, err).toBe(0);
  }, 60000);

  it('explains bad configuration instead of starting', async () => {
    const res = await run(['serve'], { ...process.env, DMGATE_PORT: 'not-a-port' });
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/DMGATE_PORT must be an integer/);
    const emulator = await run(['emulator', '--port', 'abc'], process.env);
    expect(emulator.code).toBe(2);
    expect(emulator.stderr).toMatch(/--port must be an integer from 0 to 65535, got "abc"/);
  });

  it('reads a user\'s password from piped input, and refuses input that ends without one', async () => {
    const store = await freshStorage();
    try {
      const env = { ...process.env, DMGATE_DATA_DIR: store.dataDir, DATABASE_URL: store.databaseUrl };
      const args = ['users', 'create', '--email', 'piped@example.com', '--role', 'agent'];
      const none = await run(args, env);
      expect(none.code).toBe(2);
      expect(none.stderr).toMatch(/no password given/);
      // Nothing was created: the same email is free.
      const piped = await run(args, env, 'a-long-password\n');
      expect(piped.stderr).not.toMatch(/error/i);
      expect(piped.code).toBe(0);
      expect(piped.stdout.trim()).toMatch(/^usr_/);
    } finally {
      await store.drop();
    }
  }, 60000);

  it('backs up a running SQLite gateway\'s data directory into one that serves the same data; PostgreSQL is pointed at pg_dump', async () => {
    const gw = await startTestGateway();
    const target = join(mkdtempSync(join(tmpdir(), 'dmgate-backup-')), 'copy');
    try {
      const env = { ...process.env, ...gw.env };
      if (TEST_DB === 'postgres') {
        const res = await run(['backup', '--to', target], env);
        expect(res.code).toBe(2);
        expect(res.stderr).toMatch(/pg_dump/);
        return;
      }
      await gw.connect('backup_shop');
      const conv = await customerWrites(gw, 'backup_shop', 'bea', 'keep this');
      expect((await run(['backup'], env)).code).toBe(2);
      // Taken while the gateway runs and writes.
      const writing = customerWrites(gw, 'backup_shop', 'ben', 'written meanwhile');
      const res = await run(['backup', '--to', target], env);
      await writing;
      expect(res.stderr).toContain(`wrote ${join(target, 'dmgate.db')}`);
      expect(res.code).toBe(0);
      expect(readFileSync(join(target, 'secret.key'), 'utf8')).toBe(readFileSync(join(gw.storage.dataDir, 'secret.key'), 'utf8'));
      expect(statSync(join(target, 'secret.key')).mode & 0o777).toBe(0o600);
      // A second backup into the same place is refused: nothing is overwritten.
      const again = await run(['backup', '--to', target], env);
      expect(again.code).toBe(2);
      expect(again.stderr).toMatch(/not empty/);

      // The copy serves: the conversation is there, and the account's sealed token opens with the copied key.
      const restored = await startTestGateway({ storage: { ...gw.storage, dataDir: target, drop: async () => undefined } });
      try {
        const shown = await restored.api('GET', `/v1/conversations/${conv.id}/messages`);
        expect(shown.status).toBe(200);
        expect(shown.body.data.map((m: { text: string }) => m.text)).toContain('keep this');
        const sealed = await restored.server.ctx.database.db.selectFrom('accounts').select('access_token_enc').where('username', '=', 'backup_shop').executeTakeFirstOrThrow();
        expect(restored.server.ctx.box.open(sealed.access_token_enc!)).toMatch(/\S/);
      } finally {
        await restored.close();
      }
    } finally {
      await gw.close();
      rmSync(dirname(target), { recursive: true, force: true });
    }
  }, 60000);
});
