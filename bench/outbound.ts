/**
 * npm run bench:outbound — replies through TikTok at TikTok's pace.
 *
 * The gateway (dist/cli.js serve, child process) against the emulator (dist/cli.js emulator, child
 * process) enforcing 10 QPS per business, the 48 h window, the 10-reply quota and the daily cap.
 *
 * 1. 200 accounts connected through the real OAuth redirects; each gets 10 customers who write
 *    (10 open conversations per account). The default window policy stays on: a conversation takes
 *    at most 10 replies per customer message, so 100 queued replies per account are 10 per
 *    conversation in 10 conversations (no quota raised, no rule bent).
 * 2. Throughput: the 20,000 replies are POSTed as fast as the gateway takes them; the send rate per
 *    account is measured from TikTok's side (the emulator's record of each send), against the
 *    10/s TikTok allows. Also: 40100 throttles and rule violations (both must be 0), the spread
 *    between the fastest and the slowest account, and the total.
 * 3. Latency: every customer writes again (fresh quota), then POST /v1/messages at a steady
 *    500 requests/s for BENCH_LATENCY_S seconds while the gateway sends them; p50/p99 against
 *    GET /healthz and GET /v1/messages/{id} at the same rate on the same server (baselines).
 * 4. Peak memory of the gateway process (VmHWM), against its footprint once idle after setup.
 *
 * Runs on SQLite; on PostgreSQL instead when BENCH_DATABASE_URL is set.
 * Knobs: BENCH_ACCOUNTS (200), BENCH_CONVERSATIONS (10), BENCH_LATENCY_S (10), BENCH_RATE (500).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as netServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openDatabase, type Database } from '../src/db/database.js';

const ACCOUNTS = Number(process.env.BENCH_ACCOUNTS ?? 200);
const CONVERSATIONS = Number(process.env.BENCH_CONVERSATIONS ?? 10);
const PER_CONVERSATION = 10;
const LATENCY_S = Number(process.env.BENCH_LATENCY_S ?? 10);
const RATE = Number(process.env.BENCH_RATE ?? 500);
const TIKTOK_QPS = 10;
const APP_ID = 'bench_app';
const APP_SECRET = 'bench_app_secret_0123456789abcdef';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const freePort = () => new Promise<number>((resolve) => {
  const s = netServer().listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); });
});
async function waitReady(url: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    try { if ((await fetch(url)).status < 500) return; } catch { /* not yet */ }
    await sleep(100);
  }
  throw new Error(`${url} never became ready`);
}
const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
const fmt = (n: number, d = 1) => n.toFixed(d);

/** Runs `fn` over items with at most `n` in flight. */
async function pool<T>(items: T[], n: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) { const i = next++; await fn(items[i], i); }
  }));
}

function peakRssMb(pid: number): { peak: number; now: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { peak: kb('VmHWM') / 1024, now: kb('VmRSS') / 1024 };
}

interface Setup { gwUrl: string; emuUrl: string; key: string; gateway: ChildProcess; emulator: ChildProcess; dataDir: string; db: Database; stop(): Promise<void> }

async function start(databaseUrl: string): Promise<Setup> {
  const dataDir = mkdtempSync(join(tmpdir(), 'dmgate-bench-out-'));
  const [gwPort, emuPort] = [await freePort(), await freePort()];
  const gwUrl = `http://127.0.0.1:${gwPort}`;
  const emuUrl = `http://127.0.0.1:${emuPort}`;
  const emulator = spawn(process.execPath, ['dist/cli.js', 'emulator', '--port', String(emuPort)], {
    env: { ...process.env, TIKTOK_APP_ID: APP_ID, TIKTOK_APP_SECRET: APP_SECRET }, stdio: ['ignore', 'ignore', 'inherit'],
  });
  await waitReady(`${emuUrl}/_control/stats`);
  const env = {
    ...process.env, DMGATE_PORT: String(gwPort), DMGATE_HOST: '127.0.0.1', DMGATE_DATA_DIR: dataDir, DATABASE_URL: databaseUrl,
    DMGATE_LOG_LEVEL: 'warn', DMGATE_PUBLIC_URL: gwUrl, DMGATE_ALLOW_PRIVATE_WEBHOOKS: '1', DMGATE_SANDBOX: '0',
    TIKTOK_APP_ID: APP_ID, TIKTOK_APP_SECRET: APP_SECRET, TIKTOK_API_BASE: `${emuUrl}/open_api/v1.3/`, TIKTOK_AUTH_URL: `${emuUrl}/v2/auth/authorize`,
    DMGATE_TIKTOK_QPS: String(TIKTOK_QPS),
  };
  const gateway = spawn(process.execPath, ['dist/cli.js', 'serve'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  await waitReady(`${gwUrl}/readyz`);
  const key = await new Promise<string>((resolve, reject) => {
    const c = spawn(process.execPath, ['dist/cli.js', 'keys', 'create', '--name', 'bench'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error('keys create failed'))));
  });
  const reg = await (await fetch(`${emuUrl}/open_api/v1.3/business/webhook/update/`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ app_id: APP_ID, secret: APP_SECRET, event_type: 'DIRECT_MESSAGE', callback_url: `${gwUrl}/webhooks/tiktok` }),
  })).json() as { code: number };
  if (reg.code !== 0) throw new Error(`webhook registration failed: ${JSON.stringify(reg)}`);
  const db = await openDatabase({ databaseUrl: databaseUrl || undefined, dataDir, migrate: false });
  return {
    gwUrl, emuUrl, key, gateway, emulator, dataDir, db,
    async stop() {
      await db.close();
      for (const child of [gateway, emulator]) { child.kill('SIGTERM'); await new Promise((r) => child.once('exit', r)); }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function control<T = any>(s: Setup, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${s.emuUrl}/_control/${path}`, body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (res.status >= 400) throw new Error(`control ${path}: ${res.status} ${await res.text()}`);
  return res.json() as Promise<T>;
}

async function connect(s: Setup, username: string): Promise<string> {
  await control(s, 'businesses', { username, region: 'SG' });
  const startRes = await fetch(`${s.gwUrl}/connect/tiktok`, { headers: { authorization: `Bearer ${s.key}` }, redirect: 'manual' });
  const authorize = new URL(startRes.headers.get('location')!);
  authorize.searchParams.set('login_as', username);
  const consent = await fetch(authorize, { redirect: 'manual' });
  const done = await fetch(consent.headers.get('location')!, { redirect: 'manual', headers: { accept: 'application/json' } });
  const body = await done.json() as { account?: { id: string } };
  if (!body.account) throw new Error(`connect ${username} failed: ${JSON.stringify(body)}`);
  return body.account.id;
}

async function countWhere(db: Database, status: string[]): Promise<number> {
  const r = await db.db.selectFrom('messages').select((eb) => eb.fn.countAll<number>().as('n')).where('direction', '=', 'outbound').where('status', 'in', status as never).executeTakeFirstOrThrow();
  return Number(r.n);
}

/** Every conversation processed its latest customer message (quota back to 0 used). */
async function waitForCustomers(s: Setup, expected: number, since: number): Promise<void> {
  for (let i = 0; i < 1200; i++) {
    const r = await s.db.db.selectFrom('conversations').select((eb) => eb.fn.countAll<number>().as('n'))
      .where('last_inbound_at', '>=', since).where('outbound_since_inbound', '=', 0).executeTakeFirstOrThrow();
    if (Number(r.n) >= expected) return;
    await sleep(100);
  }
  throw new Error('customer messages were not processed in time');
}

async function paced(url: string, rate: number, seconds: number, init: (i: number) => RequestInit): Promise<{ lat: number[]; non2xx: number; errors: number }> {
  const total = Math.round(rate * seconds);
  const lat: number[] = [];
  let non2xx = 0;
  let errors = 0;
  const inflight: Promise<void>[] = [];
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    const started = performance.now();
    inflight.push(fetch(url, init(i)).then(async (res) => {
      await res.arrayBuffer();
      lat.push(performance.now() - started);
      if (res.status >= 300) non2xx++;
    }, () => { errors++; }));
  }
  await Promise.all(inflight);
  lat.sort((a, b) => a - b);
  return { lat, non2xx, errors };
}

async function run(label: string, databaseUrl: string): Promise<void> {
  const s = await start(databaseUrl);
  try {
    const auth = { authorization: `Bearer ${s.key}` };
    let t = performance.now();
    const accounts = new Array<string>(ACCOUNTS);
    await pool(Array.from({ length: ACCOUNTS }, (_, i) => i), 8, async (i) => { accounts[i] = await connect(s, `bench_shop_${i}`); });
    console.log(`[${label}] connected ${ACCOUNTS} accounts through OAuth in ${fmt((performance.now() - t) / 1000)} s`);

    const customers = accounts.flatMap((_, a) => Array.from({ length: CONVERSATIONS }, (_, c) => ({ business: `bench_shop_${a}`, from: `buyer_${a}_${c}` })));
    let since = Date.now();
    t = performance.now();
    await pool(customers, 32, async (c) => { await control(s, 'dm', { ...c, text: 'Hi! Is this still available?' }); });
    await waitForCustomers(s, customers.length, since);
    console.log(`[${label}] ${customers.length} customers wrote (${CONVERSATIONS} open conversations per account) in ${fmt((performance.now() - t) / 1000)} s`);
    const convs = await s.db.db.selectFrom('conversations').select(['id', 'account_id']).orderBy('id').execute();
    const idle = peakRssMb(s.gateway.pid!).now;

    // ---- Throughput ------------------------------------------------------------------------
    const jobs = convs.flatMap((c) => Array.from({ length: PER_CONVERSATION }, (_, k) => ({ conv: c.id, k })));
    // Interleave so every account gets replies from the start (as real traffic would).
    jobs.sort((a, b) => a.k - b.k);
    const statsBefore = await control(s, 'stats');
    t = performance.now();
    let refused = 0;
    await pool(jobs, 64, async (j) => {
      const res = await fetch(`${s.gwUrl}/v1/messages`, {
        method: 'POST', headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ conversation_id: j.conv, type: 'text', text: `Reply ${j.k + 1}: yes, it is in stock and ships today.` }),
      });
      if (res.status !== 202) { refused++; if (refused <= 3) console.error(await res.text()); } else await res.arrayBuffer();
    });
    const enqueueS = (performance.now() - t) / 1000;
    console.log(`[${label}] ${jobs.length - refused} replies accepted in ${fmt(enqueueS)} s (${Math.round(jobs.length / enqueueS)}/s), ${refused} refused`);
    for (let i = 0; i < 3000; i++) {
      const pending = await countWhere(s.db, ['queued', 'sending', 'held']);
      if (pending === 0) break;
      await sleep(100);
    }
    const drainS = (performance.now() - t) / 1000;
    const failed = await countWhere(s.db, ['failed']);
    const stats = await control(s, 'stats');
    const sent = (await control<{ data: { business_id: string; timestamp: number }[] }>(s, 'sent')).data;
    const byBiz = new Map<string, number[]>();
    for (const r of sent) { let l = byBiz.get(r.business_id); if (!l) byBiz.set(r.business_id, l = []); l.push(r.timestamp); }
    const rates: number[] = [];
    let first = Infinity;
    let last = 0;
    let windowMax = 0;
    for (const ts of byBiz.values()) {
      ts.sort((a, b) => a - b);
      first = Math.min(first, ts[0]);
      last = Math.max(last, ts[ts.length - 1]);
      if (ts.length > 1) rates.push((ts.length - 1) / ((ts[ts.length - 1] - ts[0]) / 1000));
      for (let i = 0, j = 0; i < ts.length; i++) { while (ts[i] - ts[j] >= 1000) j++; windowMax = Math.max(windowMax, i - j + 1); }
    }
    rates.sort((a, b) => a - b);
    const throttles = stats.violations.qps - statsBefore.violations.qps;
    const violations = Object.values(stats.violations as Record<string, number>).reduce((a, b) => a + b, 0);
    console.log(`[${label}] all sent in ${fmt(drainS)} s: ${sent.length} at TikTok, ${failed} failed; ${Math.round(sent.length / ((last - first) / 1000))} sends/s overall`);
    console.log(`[${label}] send rate per account (TikTok's clock, first to last send): min ${fmt(rates[0], 2)}/s, p50 ${fmt(pct(rates, 50), 2)}/s, max ${fmt(rates[rates.length - 1], 2)}/s `
      + `— ${rates.filter((r) => r >= 9.5).length}/${rates.length} accounts ≥ 9.5/s (target ≥ 9.5/s)`);
    console.log(`[${label}]   = ${fmt(rates[0] / TIKTOK_QPS, 3)} / ${fmt(pct(rates, 50) / TIKTOK_QPS, 3)} of TikTok's ${TIKTOK_QPS} QPS limit (min / p50); spread fastest/slowest ${fmt(rates[rates.length - 1] / rates[0], 3)}×`);
    console.log(`[${label}] 40100 throttles: ${throttles}; rule violations: ${violations} ${JSON.stringify(stats.violations)}; busiest second of one account: ${windowMax} calls`);

    // ---- Latency ---------------------------------------------------------------------------
    since = Date.now();
    await pool(customers, 32, async (c) => { await control(s, 'dm', { ...c, text: 'One more question' }); });
    await waitForCustomers(s, customers.length, since);
    const sample = await s.db.db.selectFrom('messages').select('id').where('direction', '=', 'outbound').limit(1).executeTakeFirstOrThrow();
    const get = (): RequestInit => ({ headers: auth });
    await paced(`${s.gwUrl}/healthz`, RATE, 2, get); // warm-up
    const health = await paced(`${s.gwUrl}/healthz`, RATE, LATENCY_S, get);
    const read = await paced(`${s.gwUrl}/v1/messages/${sample.id}`, RATE, LATENCY_S, get);
    const post = await paced(`${s.gwUrl}/v1/messages`, RATE, LATENCY_S, (i) => ({
      method: 'POST', headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ conversation_id: convs[i % convs.length].id, type: 'text', text: `Latency probe ${i}` }),
    }));
    const line = (name: string, r: { lat: number[]; non2xx: number; errors: number }) =>
      `${name}: p50 ${fmt(pct(r.lat, 50), 2)} ms, p99 ${fmt(pct(r.lat, 99), 2)} ms, max ${fmt(r.lat[r.lat.length - 1], 1)} ms (${r.lat.length} answers, ${r.non2xx} non-2xx, ${r.errors} errors)`;
    console.log(`[${label}] at ${RATE} requests/s for ${LATENCY_S} s:`);
    console.log(`[${label}]   baseline GET /healthz           ${line('', health)}`);
    console.log(`[${label}]   baseline GET /v1/messages/{id}  ${line('', read)}`);
    console.log(`[${label}]   POST /v1/messages              ${line('', post)} (target p99 ≤ 20 ms)`);
    console.log(`[${label}]   POST p99 = ${fmt(pct(post.lat, 99) / pct(health.lat, 99), 2)}× /healthz p99, ${fmt(pct(post.lat, 99) / pct(read.lat, 99), 2)}× GET /v1/messages/{id} p99`);
    for (let i = 0; i < 600 && (await countWhere(s.db, ['queued', 'sending'])) > 0; i++) await sleep(100);
    const after = await control(s, 'stats');
    const total = Object.values(after.violations as Record<string, number>).reduce((a, b) => a + b, 0);
    console.log(`[${label}]   the ${post.lat.length} probes were sent too: ${after.sent - stats.sent} more at TikTok; violations now ${total}`);

    const mem = peakRssMb(s.gateway.pid!);
    console.log(`[${label}] gateway memory: peak RSS ${fmt(mem.peak, 0)} MB (idle after setup ${fmt(idle, 0)} MB, ${fmt(mem.peak / idle, 2)}×)`);
  } finally {
    await s.stop();
  }
}

async function main(): Promise<void> {
  const pgUrl = process.env.BENCH_DATABASE_URL;
  if (!pgUrl) {
    await run('sqlite', '');
    console.log('[postgres] not run: set BENCH_DATABASE_URL to measure PostgreSQL instead');
    return;
  }
  const schema = `bench_${Date.now().toString(36)}`;
  const admin = new pg.Client({ connectionString: pgUrl });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const u = new URL(pgUrl);
  u.searchParams.set('options', `-c search_path=${schema}`);
  try {
    await run('postgres', u.toString());
  } finally {
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
  }
}

main().catch((err) => { console.error(err); process.exit(1); });
