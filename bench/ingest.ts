/**
 * npm run bench:ingest — TikTok webhook ingest.
 *
 * 1. Throughput: signed TikTok webhooks durably accepted per second (50 connections, 10 s) by the
 *    gateway (child process, sandbox mode), against a bare node:http server that parses the JSON
 *    and answers 200 (child process) under the same load (the same generated, signed requests) in
 *    the same run, alternating in rounds; their ratio.
 * 2. Latency: webhook-to-subscriber p50/p99 at a steady 200 DMs/s, through ingest, processing and
 *    signed delivery to a local sink.
 * Runs on SQLite; also on PostgreSQL when BENCH_DATABASE_URL (or DATABASE_URL_TEST) is set. On a
 * PostgreSQL with autovacuum off, the bench vacuums its tables before each phase, as autovacuum would
 * (bench/vacuum.ts says why), and prints what it reclaimed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { freePort, scratchSchema } from '../test/helpers/scratch.js';
import { openDatabase } from '../src/db/database.js';
import { SERVE_NODE_FLAGS } from './serve-flags.js';
import { vacuumLikeAutovacuum } from './vacuum.js';

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);
const CONNECTIONS = 50;
const LATENCY_RATE = 200;
const LATENCY_SECONDS = Number(process.env.BENCH_LATENCY_S ?? 10);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function waitReady(url: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    try { if ((await fetch(url)).ok) return; } catch { /* not yet */ }
    await sleep(100);
  }
  throw new Error(`${url} never became ready`);
}

const BARE = `
const http = require('node:http');
http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    try { JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { res.writeHead(400); return res.end(); }
    const out = '{"ok":true}';
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': out.length });
    res.end(out);
  });
}).listen(Number(process.argv[1]), '127.0.0.1', () => console.log('ready'));`;

function webhookBody(businessId: string, n: number, prefix: string): string {
  const content = {
    type: 'text', message_id: `${prefix}-${n}`, timestamp: Date.now(), conversation_id: `bench+conv${n % 500}==`,
    text: { body: 'Hi! Is size M from the live still in stock? I would like two of them, in black, please.' },
    from: `buyer${n % 500}`, from_user: { id: `buyer-id-${n % 500}`, role: 'personal_account' },
    to: 'sandbox_shop', to_user: { id: businessId, role: 'business_account' }, unique_identifier: `buyer-id-${n % 500}`,
    scene_type: 0, is_follower: false, message_tag: { source: 'APP' },
  };
  return JSON.stringify({ client_key: 'sandbox_app', event: 'im_receive_msg', create_time: Math.floor(Date.now() / 1000), user_openid: businessId, content: JSON.stringify(content) });
}

async function load(url: string, makeRequest: (n: number) => { body: string; headers: Record<string, string> }): Promise<{ rps: number; p99: number; non2xx: number; errors: number; total: number }> {
  let n = 0;
  const opts = {
    url, connections: CONNECTIONS, duration: DURATION_S, method: 'POST' as const,
    requests: [{ setupRequest: (req: any) => { const r = makeRequest(n++); return { ...req, method: 'POST', body: r.body, headers: { 'content-type': 'application/json', ...r.headers } }; } }],
  };
  // Warm-up, then the measured run.
  await autocannon({ ...opts, duration: 2 });
  const res = await autocannon(opts);
  return { rps: res.requests.average, p99: res.latency.p99, non2xx: res.non2xx, errors: res.errors, total: res.requests.total };
}

interface Gateway { url: string; child: ChildProcess; secret: string; businessId: string; key: string; dataDir: string; stop(): Promise<void> }

async function startGateway(databaseUrl: string): Promise<Gateway> {
  const dataDir = mkdtempSync(join(tmpdir(), 'dmgate-bench-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = { ...process.env, DMGATE_PORT: String(port), DMGATE_HOST: '127.0.0.1', DMGATE_DATA_DIR: dataDir, DATABASE_URL: databaseUrl, DMGATE_SANDBOX: '1', DMGATE_LOG_LEVEL: 'warn', TIKTOK_APP_ID: '', DMGATE_PUBLIC_URL: url };
  const child = spawn(process.execPath, [...SERVE_NODE_FLAGS, 'dist/cli.js', 'serve', ...(process.env.BENCH_ROLE ? ['--role', process.env.BENCH_ROLE] : [])], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  await waitReady(`${url}/readyz`);
  const keyOut = await new Promise<string>((resolve, reject) => {
    const c = spawn(process.execPath, ['dist/cli.js', 'keys', 'create', '--name', 'bench'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error('keys create failed'))));
  });
  let businessId = '';
  for (let i = 0; i < 100 && !businessId; i++) {
    const accts = await (await fetch(`${url}/v1/accounts`, { headers: { authorization: `Bearer ${keyOut}` } })).json() as { data: { external_id: string; status: string }[] };
    businessId = accts.data.find((a) => a.status === 'active')?.external_id ?? '';
    if (!businessId) await sleep(100);
  }
  if (!businessId) throw new Error('sandbox account never connected');
  const secret = readFileSync(join(dataDir, 'sandbox-app-secret'), 'utf8').trim();
  return {
    url, child, secret, businessId, key: keyOut, dataDir,
    async stop() { child.kill('SIGTERM'); await new Promise((r) => child.once('exit', r)); rmSync(dataDir, { recursive: true, force: true }); },
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function latency(gw: Gateway, prefix: string): Promise<{ p50: number; p99: number; delivered: number; sent: number }> {
  const sentAt = new Map<string, number>();
  const lat: number[] = [];
  const sink = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const now = performance.now();
      const evt = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { provider_message_id?: string };
      const t0 = evt.provider_message_id ? sentAt.get(evt.provider_message_id) : undefined;
      if (t0 !== undefined) { lat.push(now - t0); sentAt.delete(evt.provider_message_id!); }
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  const sinkUrl = `http://127.0.0.1:${(sink.address() as { port: number }).port}/hook`;
  const ep = await fetch(`${gw.url}/v1/webhook-endpoints`, {
    method: 'POST', headers: { authorization: `Bearer ${gw.key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ url: sinkUrl, events: ['message.received'] }),
  });
  if (ep.status !== 201) throw new Error(`endpoint create failed: ${ep.status}`);
  const total = LATENCY_RATE * LATENCY_SECONDS;
  const start = performance.now();
  const inflight: Promise<unknown>[] = [];
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / LATENCY_RATE;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    const body = webhookBody(gw.businessId, i, prefix);
    const t = Math.floor(Date.now() / 1000);
    const sig = createHmac('sha256', gw.secret).update(`${t}.${body}`).digest('hex');
    sentAt.set(`${prefix}-${i}`, performance.now());
    inflight.push(fetch(`${gw.url}/webhooks/tiktok`, { method: 'POST', headers: { 'content-type': 'application/json', 'tiktok-signature': `t=${t},s=${sig}` }, body }));
  }
  await Promise.all(inflight);
  for (let i = 0; i < 100 && lat.length < total; i++) await sleep(100);
  sink.close();
  lat.sort((a, b) => a - b);
  return { p50: percentile(lat, 50), p99: percentile(lat, 99), delivered: lat.length, sent: total };
}

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);

async function runFor(label: string, databaseUrl: string, bareUrl: string): Promise<void> {
  const gw = await startGateway(databaseUrl);
  try {
    // Baseline and gateway alternate, so both see the same machine (a shared 2-core VM is noisy).
    // Processing is asynchronous and yields to ingress during the burst; each round waits for the
    // backlog to drain (and measures how fast it does), so no baseline run shares the machine with it.
    const db = await openDatabase({ databaseUrl: databaseUrl || undefined, dataDir: gw.dataDir, migrate: false });
    const pending = async () => Number((await db.db.selectFrom('inbound_events').select((eb) => eb.fn.countAll<number>().as('n')).where('status', '=', 'pending').executeTakeFirstOrThrow()).n);
    let bareTotal = 0;
    let gwTotal = 0;
    let round = 0;
    for (; round < ROUNDS; round++) {
      await vacuumLikeAutovacuum(db, label);
      // The very same requests for both (fresh signed bodies): the load generator shares the machine.
      const signed = (n: number) => {
        const body = webhookBody(gw.businessId, n, `${label}-load${round}`);
        const t = Math.floor(Date.now() / 1000);
        return { body, headers: { 'tiktok-signature': `t=${t},s=${createHmac('sha256', gw.secret).update(`${t}.${body}`).digest('hex')}` } };
      };
      const bare = await load(bareUrl, signed);
      const accepted = await load(`${gw.url}/webhooks/tiktok`, signed);
      bareTotal += bare.rps;
      gwTotal += accepted.rps;
      console.log(`[${label}] round ${round + 1}: bare node:http ${Math.round(bare.rps)} req/s; gateway ${Math.round(accepted.rps)} signed webhooks/s durably accepted (p99 ${accepted.p99} ms, non-2xx ${accepted.non2xx}, errors ${accepted.errors}); ratio ${(accepted.rps / bare.rps).toFixed(3)}`);
      const backlog = await pending();
      const t0 = performance.now();
      while ((await pending()) > 0) await sleep(100);
      const drainS = (performance.now() - t0) / 1000;
      console.log(`[${label}]   backlog after the burst: ${backlog} webhooks, processed in ${drainS.toFixed(1)} s (${Math.round(backlog / Math.max(drainS, 0.001))} webhooks/s into conversations, messages and events)`);
    }
    await vacuumLikeAutovacuum(db, label);
    await db.close();
    console.log(`[${label}] ratio gateway / bare node:http over ${ROUNDS} rounds = ${(gwTotal / bareTotal).toFixed(3)} (target >= 0.35)`);
    const l = await latency(gw, `${label}-lat`);
    console.log(`[${label}] webhook-to-subscriber latency at ${LATENCY_RATE} DMs/s: p50 ${l.p50.toFixed(1)} ms, p99 ${l.p99.toFixed(1)} ms (target p99 <= 50 ms); delivered ${l.delivered}/${l.sent}`);
  } finally {
    await gw.stop();
  }
}

async function main(): Promise<void> {
  const barePort = await freePort();
  // The baseline runs on the same Node flags as the gateway.
  const bare = spawn(process.execPath, [...SERVE_NODE_FLAGS, '-e', BARE, String(barePort)], { stdio: ['ignore', 'ignore', 'inherit'] });
  await sleep(300);
  const bareUrl = `http://127.0.0.1:${barePort}/`;
  try {
    await benchAll(bareUrl);
  } finally {
    bare.kill();
  }
}

async function benchAll(bareUrl: string): Promise<void> {
  await runFor('sqlite', '', bareUrl);
  const pgUrl = process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL_TEST;
  if (pgUrl) {
    const scratch = await scratchSchema(pgUrl, 'bench');
    try {
      await runFor('postgres', scratch.url, bareUrl);
    } finally {
      await scratch.drop();
    }
  } else {
    console.log('[postgres] skipped: set BENCH_DATABASE_URL or DATABASE_URL_TEST to measure PostgreSQL too');
  }
}

main().catch((err) => { console.error(err); process.exit(1); });
