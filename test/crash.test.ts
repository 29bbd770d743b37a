import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { startEmulator } from '../src/emulator/index.js';
import { openDatabase } from '../src/db/database.js';
import { createApiKey } from '../src/auth/api-keys.js';
import { freePort } from './helpers/scratch.js';
import { freshStorage, type TestStorage } from './helpers/db.js';
import { startSink, type Sink } from './helpers/sink.js';
import { APP_ID, APP_SECRET, assertNoViolations } from './helpers/gateway.js';

async function waitUntil(fn: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Nothing acknowledged is lost: SIGKILL the gateway while the emulator pushes 1,000 DMs. */
describe('crash safety', () => {
  let storage: TestStorage;
  let sink: Sink;
  let child: ChildProcess | null = null;
  let emu: Awaited<ReturnType<typeof startEmulator>>;

  afterAll(async () => {
    child?.kill('SIGKILL');
    const stats = emu ? await (await fetch(`${emu.url}/_control/stats`)).json() as { violations: Record<string, number> } : null;
    await emu?.close();
    await sink?.close();
    await storage?.drop();
    if (stats) assertNoViolations(stats.violations);
  });

  it('stores and delivers every DM after a SIGKILL mid-stream', async () => {
    storage = await freshStorage();
    sink = await startSink();
    emu = await startEmulator({ appId: APP_ID, appSecret: APP_SECRET, webhookRetryDelaysMs: [100, 200, 400, 800, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000], webhookConcurrency: 32 });
    const port = await freePort();
    const gw = `http://127.0.0.1:${port}`;
    const env = {
      ...process.env, DMGATE_PORT: String(port), DMGATE_HOST: '127.0.0.1', DMGATE_DATA_DIR: storage.dataDir, DATABASE_URL: storage.databaseUrl,
      TIKTOK_APP_ID: APP_ID, TIKTOK_APP_SECRET: APP_SECRET, TIKTOK_API_BASE: `${emu.url}/open_api/v1.3/`, TIKTOK_AUTH_URL: `${emu.url}/v2/auth/authorize`,
      DMGATE_ALLOW_PRIVATE_WEBHOOKS: '1', DMGATE_LOG_LEVEL: 'warn', DMGATE_DELIVERY_SCHEDULE: '0,0.2,0.5,1,1,1', DMGATE_POLL_INTERVAL_MS: '100',
      DMGATE_PUBLIC_URL: gw,
    };
    const start = async () => {
      child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
      await waitUntil(async () => (await fetch(`${gw}/readyz`)).ok, 30000, 'gateway ready');
    };
    await start();

    const database = await openDatabase({ databaseUrl: storage.databaseUrl || undefined, dataDir: storage.dataDir });
    const { key } = await createApiKey(database, 'crash');
    await database.close();
    const auth = { authorization: `Bearer ${key}` };
    await fetch(`${emu.url}/_control/businesses`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'crash_shop' }) });
    await fetch(`${emu.url}/open_api/v1.3/business/webhook/update/`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ app_id: APP_ID, secret: APP_SECRET, event_type: 'DIRECT_MESSAGE', callback_url: `${gw}/webhooks/tiktok` }),
    });
    const connect = await fetch(`${gw}/connect/tiktok`, { headers: auth, redirect: 'manual' });
    const authorize = new URL(connect.headers.get('location')!);
    authorize.searchParams.set('login_as', 'crash_shop');
    const consent = await fetch(authorize, { redirect: 'manual' });
    expect((await fetch(consent.headers.get('location')!, { headers: { accept: 'application/json' } })).status).toBe(200);
    const ep = await fetch(`${gw}/v1/webhook-endpoints`, {
      method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ url: `${sink.url}/hook`, events: ['message.received'] }),
    });
    expect(ep.status).toBe(201);

    const TOTAL = 1000;
    const sent: string[] = [];
    const push = async (from: number, to: number) => {
      for (let i = from; i < to; i += 50) {
        const batch = await Promise.all(Array.from({ length: Math.min(50, to - i) }, (_, j) => fetch(`${emu.url}/_control/dm`, {
          method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ business: 'crash_shop', from: `buyer${(i + j) % 40}`, text: `dm ${i + j}` }),
        }).then((r) => r.json() as Promise<{ message_id: string }>)));
        sent.push(...batch.map((b) => b.message_id));
      }
    };
    await push(0, 400);
    // Kill while webhooks are in flight: whatever was acknowledged must survive.
    child!.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));
    await push(400, 700);
    await start();
    await push(700, TOTAL);

    const received = () => new Set(sink.requests.map((r) => (JSON.parse(r.body) as { provider_message_id: string }).provider_message_id));
    await waitUntil(async () => received().size >= TOTAL, 120000, `${TOTAL} deliveries (have ${received().size})`);
    expect([...received()].sort()).toEqual([...sent].sort());
    // The kill really cut traffic: TikTok's side saw refused pushes and retried them.
    const stats = await (await fetch(`${emu.url}/_control/stats`)).json() as { webhooks: { failed_attempts: number; delivered: number } };
    expect(stats.webhooks.failed_attempts).toBeGreaterThan(0);

    const db2 = await openDatabase({ databaseUrl: storage.databaseUrl || undefined, dataDir: storage.dataDir, migrate: false });
    const n = await db2.db.selectFrom('messages').select((eb) => eb.fn.countAll<number>().as('n')).where('direction', '=', 'inbound').executeTakeFirstOrThrow();
    await db2.close();
    expect(Number(n.n)).toBe(TOTAL);
  }, 240000);
});
