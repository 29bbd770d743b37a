import { it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { serve } from '../src/server.js';
import { createApiKey } from '../src/auth/api-keys.js';
import { appendEvents } from '../src/events/outbox.js';
import { freshStorage } from './helpers/db.js';
import { startSink } from './helpers/sink.js';

it('latency at 200 events/s', async () => {
  const storage = await freshStorage();
  const server = await serve(loadConfig({ DMGATE_PORT: '0', DMGATE_DATA_DIR: storage.dataDir, DATABASE_URL: storage.databaseUrl, TIKTOK_APP_ID: 'x', TIKTOK_APP_SECRET: 'y', DMGATE_LOG_LEVEL: 'silent', DMGATE_ALLOW_PRIVATE_WEBHOOKS: '1' }));
  const { key } = await createApiKey(server.ctx.database, 't');
  const sinks = [await startSink(), await startSink()];
  for (const s of sinks) {
    await fetch(server.url + '/v1/webhook-endpoints', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ url: s.url, events: ['*'] }) });
  }
  const sent = new Map<string, number>();
  const stalls: number[] = [];
  let last = performance.now();
  const mon = setInterval(() => { const n = performance.now(); if (n - last > 30) stalls.push(Math.round(n - last)); last = n; }, 5);
  const sq = (server.ctx.database as any).sqlite;
  const slow: string[] = [];
  if (sq) {
    const orig = sq.prepare.bind(sq);
    sq.prepare = (text: string) => { const st = orig(text); for (const m of ['run', 'all', 'get']) { const f = st[m].bind(st); st[m] = (...a: unknown[]) => { const t = performance.now(); const r = f(...a); const d = performance.now() - t; if (d > 20) slow.push(`${Math.round(d)}ms ${text.slice(0, 80)}`); return r; }; } return st; };
  }
  const N = 2000;
  const cpu0 = process.cpuUsage();
  const t0 = Date.now();
  for (let i = 0; i < N; i++) {
    const target = t0 + i * 5;
    const wait = target - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const at = Date.now();
    const [st] = await server.ctx.database.db.transaction().execute((tx) => appendEvents(tx, [{ event: 'message.received', account_id: 'a', provider: 'tiktok', conversation_id: `cv_${i % 50}`, data: { text: 'x'.repeat(200) } }], at));
    sent.set(st.id, at);
    server.ctx.bus.notify('deliveries');
    server.ctx.bus.notify('events');
  }
  await Promise.all(sinks.map((s) => s.waitFor(N, 30000)));
  const elapsed = Date.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const lat = sinks.flatMap((s) => s.requests.map((r) => r.at - sent.get(JSON.parse(r.body).id)!)).sort((a, b) => a - b);
  const p = (q: number) => lat[Math.floor(q * (lat.length - 1))];
  console.log(`BENCH ${process.env.DMGATE_TEST_DB} n=${lat.length} p50=${p(0.5)} p90=${p(0.9)} p99=${p(0.99)} max=${lat[lat.length - 1]} elapsed=${elapsed}ms cpu=${Math.round((cpu.user + cpu.system) / 1000)}ms`);
  clearInterval(mon);
  console.log('BENCH stalls', stalls.join(','));
  console.log('BENCH slow', slow.slice(0, 20).join('\n'));
  for (const s of sinks) await s.close();
  await server.close();
  await storage.drop();
}, 120000);
