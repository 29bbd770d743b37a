import { sql } from 'kysely';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import { loadConfig, type Env } from '../src/config.js';
import { serve, type RunningServer } from '../src/server.js';
import { createApiKey } from '../src/auth/api-keys.js';
import { appendEvents } from '../src/events/outbox.js';
import type { EventInput, StoredEvent } from '../src/events/types.js';
import { AnswerAudit, LogCapture } from './helpers/audit.js';
import { freshStorage, TEST_DB, type TestStorage } from './helpers/db.js';
import { startSink, type Sink } from './helpers/sink.js';

/** A gateway without the emulator: events come from appendEvents or the endpoint test route. */
interface Gw {
  server: RunningServer;
  storage: TestStorage;
  api<T = any>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  append(inputs: EventInput[]): Promise<StoredEvent[]>;
  close(): Promise<void>;
}

async function startGateway(env: Env = {}, shared?: TestStorage): Promise<Gw> {
  const storage = shared ?? await freshStorage();
  const config = loadConfig({
    DMGATE_PORT: '0', DMGATE_HOST: '127.0.0.1', DMGATE_DATA_DIR: storage.dataDir, DATABASE_URL: storage.databaseUrl,
    TIKTOK_APP_ID: 'test_app', TIKTOK_APP_SECRET: 'test_app_secret', DMGATE_LOG_LEVEL: 'info',
    DMGATE_ALLOW_PRIVATE_WEBHOOKS: '1', DMGATE_DELIVERY_SCHEDULE: '0,0.2,0.4', DMGATE_DELIVERY_TIMEOUT_MS: '1000',
    DMGATE_POLL_INTERVAL_MS: '50', DMGATE_SECRET_KEY: 'webhooks-test-secret-key',
    ...env,
  });
  // Checked at close, as the test gateway's are (helpers/audit.ts): no secret logged, every error in shape.
  const logs = new LogCapture();
  const server = await serve(config, { logDestination: logs });
  const { key } = await createApiKey(server.ctx.database, 'test');
  const audit = new AnswerAudit();
  audit.keep(key, 'the API key');
  audit.keep(config.tiktokAppSecret, 'the TikTok app secret');
  audit.keep(config.secretKey, 'the secret key');
  return {
    server, storage,
    async api(method, path, body) {
      const res = await fetch(server.url + path, {
        method,
        headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try { parsed = JSON.parse(text); } catch { /* not JSON */ }
      audit.note(`${method} ${path}`, body, res, text, parsed);
      return { status: res.status, body: parsed as any };
    },
    async append(inputs) {
      const ctx = server.ctx;
      const stored = await ctx.database.db.transaction().execute((tx) => appendEvents(tx, inputs, Date.now()));
      ctx.bus.notify('deliveries');
      ctx.bus.notify('events');
      return stored;
    },
    async close() {
      await server.close();
      if (!shared) await storage.drop();
      audit.check(logs);
    },
  };
}

const ev = (event: EventInput['event'], conversation_id: string | null = 'cv_1', data: Record<string, unknown> = {}): EventInput =>
  ({ event, account_id: 'acct_1', provider: 'tiktok', conversation_id, data: { text: 'hi', ...data } });

const until = async (what: string, check: () => Promise<boolean> | boolean, timeoutMs = 8000) => {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(env: Env = {}, shared?: TestStorage) {
  const gw = await startGateway(env, shared);
  cleanups.push(() => gw.close());
  return gw;
}
async function sink(respond?: Parameters<typeof startSink>[0]) {
  const s = await startSink(respond);
  cleanups.push(() => s.close());
  return s;
}
async function endpoint(gw: Gw, s: Sink, events: string[] = ['*'], extra: Record<string, unknown> = {}) {
  const res = await gw.api('POST', '/v1/webhook-endpoints', { url: s.url + '/hook', events, ...extra });
  expect(res.status).toBe(201);
  return res.body as { id: string; signing_secret: string; url: string; enabled: boolean; ordered: boolean };
}

describe('webhook endpoints API', () => {
  it('creates an endpoint, shows the secret only once, lists, patches, rotates and deletes', async () => {
    const gw = await setup();
    const s = await sink();
    const created = await gw.api('POST', '/v1/webhook-endpoints', { url: s.url + '/hook', events: ['message.received', 'message.received'], description: 'crm' });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ url: s.url + '/hook', events: ['message.received'], description: 'crm', enabled: true, ordered: false });
    expect(created.body.id).toMatch(/^wh_/);
    expect(created.body.signing_secret).toMatch(/^whsec_/);
    expect(typeof created.body.created_at).toBe('string');
    const id = created.body.id;

    const shown = await gw.api('GET', `/v1/webhook-endpoints/${id}`);
    expect(shown.status).toBe(200);
    expect(shown.body.signing_secret).toBeUndefined();
    expect(JSON.stringify(shown.body)).not.toContain('whsec_');
    const row = await gw.server.ctx.database.db.selectFrom('webhook_endpoints').select('secret_enc').where('id', '=', id).executeTakeFirstOrThrow();
    expect(row.secret_enc).not.toContain(created.body.signing_secret.slice(6));

    const second = await endpoint(gw, s, ['*']);
    const page1 = await gw.api('GET', '/v1/webhook-endpoints?limit=1');
    expect(page1.body.data).toHaveLength(1);
    expect(page1.body.data[0].id).toBe(id);
    expect(page1.body.next_cursor).toEqual(expect.any(String));
    const page2 = await gw.api('GET', `/v1/webhook-endpoints?limit=1&cursor=${page1.body.next_cursor}`);
    expect(page2.body.data.map((e: { id: string }) => e.id)).toEqual([second.id]);
    expect(page2.body.next_cursor).toBeNull();
    expect(JSON.stringify([page1.body, page2.body])).not.toContain('whsec_');

    const patched = await gw.api('PATCH', `/v1/webhook-endpoints/${id}`, { events: ['*'], ordered: true, enabled: false });
    expect(patched.body).toMatchObject({ events: ['*'], ordered: true, enabled: false, disabled_reason: expect.any(String) });
    const enabled = await gw.api('PATCH', `/v1/webhook-endpoints/${id}`, { enabled: true, description: null });
    expect(enabled.body).toMatchObject({ enabled: true, disabled_reason: null, description: null });

    const rotated = await gw.api('POST', `/v1/webhook-endpoints/${id}/rotate-secret`);
    expect(rotated.status).toBe(200);
    expect(rotated.body.signing_secret).toMatch(/^whsec_/);
    expect(rotated.body.signing_secret).not.toBe(created.body.signing_secret);

    expect((await gw.api('DELETE', `/v1/webhook-endpoints/${id}`)).status).toBe(204);
    const gone = await gw.api('GET', `/v1/webhook-endpoints/${id}`);
    expect(gone.status).toBe(404);
    expect(gone.body.error.code).toBe('not_found');
  });

  it('a rotated secret keeps signing beside the new one for the overlap asked, so subscribers switch without a refusal', async () => {
    const gw = await setup();
    const s = await sink();
    const ep = await endpoint(gw, s);
    const verify = (secret: string, i: number) => {
      const r = s.requests[i];
      return new Webhook(secret).verify(r.body, {
        'webhook-id': String(r.headers['webhook-id']), 'webhook-timestamp': String(r.headers['webhook-timestamp']), 'webhook-signature': String(r.headers['webhook-signature']),
      });
    };
    const rotated = await gw.api('POST', `/v1/webhook-endpoints/${ep.id}/rotate-secret`);
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(200);
    await gw.append([ev('message.received')]);
    await s.waitFor(1);
    // Signed by both: a subscriber still on the old secret and one already on the new verify it.
    expect(String(s.requests[0].headers['webhook-signature']).split(' ')).toHaveLength(2);
    expect(verify(ep.signing_secret, 0)).toMatchObject({ event: 'message.received' });
    expect(verify(rotated.body.signing_secret, 0)).toMatchObject({ event: 'message.received' });

    // Rotating again with no overlap: only the newest secret signs.
    const bad = await gw.api('POST', `/v1/webhook-endpoints/${ep.id}/rotate-secret`, { previous_valid_for_s: 8 * 86400 });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ code: 'invalid_request', details: { field: 'previous_valid_for_s' } });
    const now = await gw.api('POST', `/v1/webhook-endpoints/${ep.id}/rotate-secret`, { previous_valid_for_s: 0 });
    expect(now.status).toBe(200);
    await gw.append([ev('message.received')]);
    await s.waitFor(2);
    expect(String(s.requests[1].headers['webhook-signature']).split(' ')).toHaveLength(1);
    expect(verify(now.body.signing_secret, 1)).toMatchObject({ event: 'message.received' });
    expect(() => verify(rotated.body.signing_secret, 1)).toThrow();
  });

  it('validates event names and URLs', async () => {
    const gw = await setup();
    const bad = await gw.api('POST', '/v1/webhook-endpoints', { url: 'http://127.0.0.1:9/x', events: ['message.nope'] });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('invalid_request');
    // The answer names the event types there are.
    expect(bad.body.error.details).toMatchObject({ field: 'events[0]', rule: 'enum' });
    expect(bad.body.error.details.allowed).toEqual(expect.arrayContaining(['*', 'message.received', 'message.status']));
    expect(bad.body.error.message).toMatch(/^events\[0\] must be one of: .*message\.received/);
    const none = await gw.api('POST', '/v1/webhook-endpoints', { url: 'http://127.0.0.1:9/x', events: [] });
    expect(none.status).toBe(400);
    const ftp = await gw.api('POST', '/v1/webhook-endpoints', { url: 'ftp://example.com/x', events: ['*'] });
    expect(ftp.status).toBe(400);
    expect(ftp.body.error.details.field).toBe('url');
    const unauth = await fetch(gw.server.url + '/v1/webhook-endpoints');
    expect(unauth.status).toBe(401);
  });

  it('refuses private and loopback URLs unless private webhooks are allowed', async () => {
    const gw = await setup({ DMGATE_ALLOW_PRIVATE_WEBHOOKS: '0' });
    for (const url of ['http://127.0.0.1:3000/x', 'http://localhost/x', 'http://169.254.169.254/latest/meta-data', 'http://10.1.2.3/x', 'http://[::1]/x', 'http://100.64.0.1/']) {
      const res = await gw.api('POST', '/v1/webhook-endpoints', { url, events: ['*'] });
      expect(res.status, url).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
      expect(res.body.error.details.field).toBe('url');
    }
    const ok = await gw.api('POST', '/v1/webhook-endpoints', { url: 'https://93.184.216.34/hook', events: ['*'] });
    expect(ok.status).toBe(201);
    const patch = await gw.api('PATCH', `/v1/webhook-endpoints/${ok.body.id}`, { url: 'http://192.168.1.10/x' });
    expect(patch.status).toBe(400);
  });
});

describe('webhook delivery', () => {
  it('delivers signed events that the standardwebhooks library verifies, only to subscribed endpoints', async () => {
    const gw = await setup();
    const received = await sink();
    const all = await sink();
    const other = await sink();
    const epReceived = await endpoint(gw, received, ['message.received']);
    await endpoint(gw, all, ['*']);
    await endpoint(gw, other, ['conversation.created', 'message.sent']);

    const stored = await gw.append([ev('message.received'), ev('conversation.created'), ev('message.status'), ev('message.received')]);
    await all.waitFor(4);
    await received.waitFor(2);
    await other.waitFor(1);
    await new Promise((r) => setTimeout(r, 300));
    expect(received.requests.map((r) => JSON.parse(r.body).event)).toEqual(['message.received', 'message.received']);
    expect(other.requests.map((r) => JSON.parse(r.body).event)).toEqual(['conversation.created']);
    expect(all.requests.map((r) => JSON.parse(r.body).id).sort()).toEqual(stored.map((s) => s.id).sort());

    const wh = new Webhook(epReceived.signing_secret);
    for (const req of received.requests) {
      const body = JSON.parse(req.body);
      expect(req.headers['webhook-id']).toBe(body.id);
      expect(req.headers['content-type']).toBe('application/json');
      expect(req.headers['user-agent']).toMatch(/dmgate/);
      expect(wh.verify(req.body, req.headers as Record<string, string>)).toEqual(body);
      expect(req.body).toBe(stored.find((s) => s.id === body.id)!.payload);
    }
    expect(() => new Webhook('whsec_' + Buffer.alloc(32, 7).toString('base64'))
      .verify(received.requests[0].body, received.requests[0].headers as Record<string, string>)).toThrow();

    // The test event goes to the endpoint asked, even though it does not subscribe to webhook.test.
    const test = await gw.api('POST', `/v1/webhook-endpoints/${epReceived.id}/test`);
    expect(test.status).toBe(202);
    await received.waitFor(3);
    const body = received.json(2);
    expect(body).toMatchObject({ id: test.body.event_id, event: 'webhook.test' });
    expect(wh.verify(received.requests[2].body, received.requests[2].headers as Record<string, string>)).toBeTruthy();
    await new Promise((r) => setTimeout(r, 200));
    expect(all.requests).toHaveLength(4);
    expect(other.requests).toHaveLength(1);
  });

  it('retries a failed attempt with the same webhook-id and records every attempt', async () => {
    const gw = await setup();
    const s = await sink((_req, i) => ({ status: i === 0 ? 500 : 200 }));
    const ep = await endpoint(gw, s);
    const [stored] = await gw.append([ev('message.received')]);
    await s.waitFor(2);
    expect(s.requests[0].headers['webhook-id']).toBe(stored.id);
    expect(s.requests[1].headers['webhook-id']).toBe(stored.id);
    expect(new Webhook(ep.signing_secret).verify(s.requests[1].body, s.requests[1].headers as Record<string, string>)).toBeTruthy();

    let list: any;
    await until('two recorded attempts', async () => {
      list = (await gw.api('GET', `/v1/webhook-endpoints/${ep.id}/deliveries`)).body;
      return list.data.length === 2 && list.data[0].delivery_status === 'succeeded';
    });
    expect(list.data.map((a: { status_code: number }) => a.status_code)).toEqual([200, 500]);
    expect(list.data[0]).toMatchObject({ event_id: stored.id, event_type: 'message.received', error: null, delivery_status: 'succeeded' });
    expect(list.data[1]).toMatchObject({ event_id: stored.id, error: 'HTTP 500', response_body: 'ok' });
    expect(list.data[0].latency_ms).toEqual(expect.any(Number));

    const p1 = await gw.api('GET', `/v1/webhook-endpoints/${ep.id}/deliveries?limit=1`);
    expect(p1.body.data[0].id).toBe(list.data[0].id);
    const p2 = await gw.api('GET', `/v1/webhook-endpoints/${ep.id}/deliveries?limit=1&cursor=${p1.body.next_cursor}`);
    expect(p2.body.data[0].id).toBe(list.data[1].id);
    expect(p2.body.next_cursor).toBeNull();
  });

  it('records a subscriber answer holding NUL bytes (binary, or text PostgreSQL cannot store) and delivers on', async () => {
    const gw = await setup();
    const s = await sink((_req, i) => (i === 0 ? { status: 500, body: Buffer.from([0x1f, 0x8b, 0x00, 0x00, 0x45, 0x72, 0x72]) } : { status: 200, body: 'fine\u0000' }));
    const ep = await endpoint(gw, s);
    await gw.append([ev('message.received')]);
    await s.waitFor(2);
    let list: any;
    await until('two recorded attempts', async () => {
      list = (await gw.api('GET', `/v1/webhook-endpoints/${ep.id}/deliveries`)).body;
      return list.data.length === 2 && list.data[0].delivery_status === 'succeeded';
    });
    expect(list.data.map((a: { status_code: number }) => a.status_code)).toEqual([200, 500]);
    expect(list.data[0].response_body).toBe('fine\uFFFD');
    expect(list.data[1].response_body).not.toContain('\u0000');
    expect(list.data[1].response_body).toContain('Err');
  });

  it('records the other outcomes when one cannot be written, and that one without the answer\'s body', async () => {
    const gw = await setup();
    // A row the database refuses, as a fault of ours would make one: the answer body 'poison'.
    const db = gw.server.ctx.database.db;
    if (TEST_DB === 'postgres') {
      await sql.raw(`create function refuse_poison() returns trigger language plpgsql as $$ begin
        if new.response_body = 'poison' then raise exception 'poisoned row'; end if; return new; end $$`).execute(db);
      await sql.raw('create trigger refuse_poison before insert on delivery_attempts for each row execute function refuse_poison()').execute(db);
    } else {
      await sql.raw(`create trigger refuse_poison before insert on delivery_attempts when new.response_body = 'poison'
        begin select raise(abort, 'poisoned row'); end`).execute(db);
    }
    const s = await sink((req) => ({ status: 200, body: req.body.includes('"text":"bad"') ? 'poison' : 'ok' }));
    const ep = await endpoint(gw, s);
    // Together: their outcomes share a flush.
    const stored = await gw.append([ev('message.received', 'cv_1'), ev('message.received', 'cv_2', { text: 'bad' }), ev('message.received', 'cv_3'), ev('message.received', 'cv_4')]);
    let list: any;
    await until('four recorded attempts', async () => {
      list = (await gw.api('GET', `/v1/webhook-endpoints/${ep.id}/deliveries`)).body;
      return list.data.length === 4 && list.data.every((a: { delivery_status: string }) => a.delivery_status === 'succeeded');
    });
    const byEvent = new Map(list.data.map((a: { event_id: string }) => [a.event_id, a]));
    expect(byEvent.get(stored[1].id)).toMatchObject({ status_code: 200, response_body: null });
    for (const i of [0, 2, 3]) expect(byEvent.get(stored[i].id)).toMatchObject({ status_code: 200, response_body: 'ok' });
    expect(s.requests).toHaveLength(4);
  });

  it('disables the endpoint on 410 Gone', async () => {
    const gw = await setup();
    const s = await sink(() => ({ status: 410 }));
    const ep = await endpoint(gw, s);
    await gw.append([ev('message.received')]);
    await s.waitFor(1);
    await until('endpoint disabled', async () => (await gw.api('GET', `/v1/webhook-endpoints/${ep.id}`)).body.enabled === false);
    const shown = await gw.api('GET', `/v1/webhook-endpoints/${ep.id}`);
    expect(shown.body.disabled_reason).toMatch(/410/);
    const attempts = await gw.api('GET', `/v1/webhook-endpoints/${ep.id}/deliveries`);
    expect(attempts.body.data[0]).toMatchObject({ status_code: 410, delivery_status: 'failed' });
    // New events are not delivered to a disabled endpoint.
    await gw.append([ev('message.received')]);
    await new Promise((r) => setTimeout(r, 500));
    expect(s.requests).toHaveLength(1);
    const reenabled = await gw.api('PATCH', `/v1/webhook-endpoints/${ep.id}`, { enabled: true });
    expect(reenabled.body).toMatchObject({ enabled: true, disabled_reason: null });
  });

  it('honours Retry-After on 429', async () => {
    const gw = await setup();
    const s = await sink((_req, i) => (i === 0 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200 }));
    await endpoint(gw, s);
    await gw.append([ev('message.received')]);
    await s.waitFor(2, 10_000);
    // The schedule alone would retry after 0.2 s.
    expect(s.requests[1].at - s.requests[0].at).toBeGreaterThanOrEqual(950);
  });

  it('does not follow redirects', async () => {
    const gw = await setup({ DMGATE_DELIVERY_SCHEDULE: '0' });
    const target = await sink();
    const s = await sink(() => ({ status: 307, headers: { location: target.url + '/elsewhere' } }));
    const ep = await endpoint(gw, s);
    await gw.append([ev('message.received')]);
    await s.waitFor(1);
    await until('dead letter', async () => (await gw.api('GET', `/v1/webhook-endpoints/${ep.id}/deliveries`)).body.data[0]?.delivery_status === 'failed');
    expect(target.requests).toHaveLength(0);
  });

  it('dead-letters after the last attempt, then recover and retry deliver', async () => {
    const gw = await setup();
    let healthy = false;
    const s = await sink(() => ({ status: healthy ? 200 : 500 }));
    const ep = await endpoint(gw, s);
    const since = Math.floor(Date.now() / 1000) - 1;
    const [a, b] = await gw.append([ev('message.received'), ev('message.sent')]);
    await s.waitFor(6);
    await until('both failed', async () => {
      const rows = await gw.server.ctx.database.db.selectFrom('deliveries').select('status').where('endpoint_id', '=', ep.id).execute();
      return rows.length === 2 && rows.every((r) => r.status === 'failed');
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(s.requests).toHaveLength(6); // 3 attempts each, no more

    healthy = true;
    const deliveries = await gw.server.ctx.database.db.selectFrom('deliveries').select(['id', 'event_id']).where('endpoint_id', '=', ep.id).execute();
    const da = deliveries.find((d) => d.event_id === a.id)!;
    const retried = await gw.api('POST', `/v1/deliveries/${da.id}/retry`);
    expect(retried.status).toBe(202);
    await s.waitFor(7);
    expect(JSON.parse(s.requests[6].body).id).toBe(a.id);
    await until('a delivered', async () => (await gw.api('GET', `/v1/deliveries/${da.id}`)).body.status === 'succeeded');

    const recovered = await gw.api('POST', `/v1/webhook-endpoints/${ep.id}/recover`, { since });
    expect(recovered.status).toBe(202);
    expect(recovered.body).toEqual({ recovered: 1 });
    await s.waitFor(8);
    expect(JSON.parse(s.requests[7].body).id).toBe(b.id);
    const none = await gw.api('POST', `/v1/webhook-endpoints/${ep.id}/recover`, { since: new Date(Date.now() + 60_000).toISOString() });
    expect(none.body).toEqual({ recovered: 0 });
    const bad = await gw.api('POST', `/v1/webhook-endpoints/${ep.id}/recover`, { since: 'yesterday-ish' });
    expect(bad.status).toBe(400);
    const backwards = await gw.api('POST', `/v1/webhook-endpoints/${ep.id}/recover`, { since, until: since });
    expect(backwards.status).toBe(400);
    expect(backwards.body.error.details).toMatchObject({ field: 'until' });
    expect((await gw.api('POST', '/v1/deliveries/whd_nope/retry')).status).toBe(404);
  });

  it('a hanging endpoint does not delay a healthy one', async () => {
    const gw = await setup({ DMGATE_DELIVERY_TIMEOUT_MS: '20000', DMGATE_DELIVERY_PER_ENDPOINT: '2', DMGATE_DELIVERY_CONCURRENCY: '8' });
    const hanging = await sink(() => ({ status: 200, hang: true }));
    const healthy = await sink();
    await endpoint(gw, hanging);
    await endpoint(gw, healthy);
    await gw.append([ev('message.received')]);
    await hanging.waitFor(1);
    for (let i = 0; i < 10; i++) await gw.append([ev('message.received', `cv_${i}`)]);
    const started = Date.now();
    await healthy.waitFor(11, 5000);
    expect(Date.now() - started).toBeLessThan(5000);
    await new Promise((r) => setTimeout(r, 200));
    expect(hanging.requests.length).toBe(2); // its cap; the rest waits
  });

  it('delivers one conversation in order on an ordered endpoint, even when the first attempt fails', async () => {
    const gw = await setup();
    let failedOnce = false;
    const s = await sink((req) => {
      const body = JSON.parse(req.body);
      if (body.text === 'c1-0' && !failedOnce) { failedOnce = true; return { status: 500 }; }
      return { status: 200, delayMs: 5 };
    });
    await endpoint(gw, s, ['*'], { ordered: true });
    const inputs: EventInput[] = [];
    for (let i = 0; i < 5; i++) {
      inputs.push(ev('message.received', 'cv_a', { text: `c1-${i}` }));
      inputs.push(ev('message.received', 'cv_b', { text: `c2-${i}` }));
    }
    await gw.append(inputs);
    await s.waitFor(11);
    await new Promise((r) => setTimeout(r, 300));
    const texts = s.requests.map((r) => JSON.parse(r.body).text as string);
    expect(texts.filter((t) => t.startsWith('c1-'))).toEqual(['c1-0', 'c1-0', 'c1-1', 'c1-2', 'c1-3', 'c1-4']);
    expect(texts.filter((t) => t.startsWith('c2-'))).toEqual(['c2-0', 'c2-1', 'c2-2', 'c2-3', 'c2-4']);
    // The other conversation was not held up by the failing one.
    expect(texts.indexOf('c2-0')).toBeLessThan(texts.lastIndexOf('c1-0'));
  });

  it('continues an ordered conversation after a dead letter', async () => {
    const gw = await setup({ DMGATE_DELIVERY_SCHEDULE: '0,0.1' });
    const s = await sink((req) => ({ status: JSON.parse(req.body).text === 'first' ? 500 : 200 }));
    await endpoint(gw, s, ['*'], { ordered: true });
    await gw.append([ev('message.received', 'cv_x', { text: 'first' }), ev('message.received', 'cv_x', { text: 'second' })]);
    await s.waitFor(3);
    expect(s.requests.map((r) => JSON.parse(r.body).text)).toEqual(['first', 'first', 'second']);
  });
});

describe('delivery worker lifecycle', () => {
  it('gives in-flight deliveries back on shutdown; the next start delivers them', async () => {
    const storage = await freshStorage();
    cleanups.push(() => storage.drop());
    let hang = true;
    const s = await sink(() => (hang ? { status: 200, hang: true } : { status: 200 }));
    const first = await startGateway({ DMGATE_DELIVERY_TIMEOUT_MS: '30000' }, storage);
    const ep = await endpoint(first, s);
    const [stored] = await first.append([ev('message.received')]);
    await s.waitFor(1);
    const started = Date.now();
    await first.close();
    expect(Date.now() - started).toBeLessThan(10_000);
    hang = false;
    const again = await startGateway({ DMGATE_DELIVERY_SCHEDULE: '0', DMGATE_POLL_INTERVAL_MS: '60000' }, storage);
    cleanups.push(() => again.close());
    await s.waitFor(2);
    expect(JSON.parse(s.requests[1].body).id).toBe(stored.id);
    await until('recorded', async () => (await again.api('GET', `/v1/webhook-endpoints/${ep.id}/deliveries`)).body.data[0]?.delivery_status === 'succeeded');
  });

  it('re-delivers a delivery whose lease expired (a crashed worker)', async () => {
    const gw = await setup();
    const s = await sink();
    const ep = await endpoint(gw, s);
    const now = Date.now();
    // What a crashed process leaves behind: claimed, lease run out, no outcome.
    await gw.server.ctx.database.db.transaction().execute(async (tx) => {
      const e = await tx.insertInto('events').values({ id: 'evt_crashed', type: 'message.received', account_id: 'acct_1', conversation_id: null, payload: '{"id":"evt_crashed","event":"message.received"}', created_at: now }).returning('seq').executeTakeFirstOrThrow();
      await tx.insertInto('deliveries').values({ id: 'whd_crashed', event_id: 'evt_crashed', event_seq: e.seq, endpoint_id: ep.id, conversation_id: null, status: 'delivering', attempts: 0, next_attempt_at: now, locked_until: now - 1, last_status_code: null, last_error: null, created_at: now, updated_at: now }).execute();
    });
    await s.waitFor(1, 10_000);
    expect(s.requests[0].headers['webhook-id']).toBe('evt_crashed');
    await until('succeeded', async () => (await gw.api('GET', '/v1/deliveries/whd_crashed')).body.status === 'succeeded');
  });

  it.skipIf(TEST_DB !== 'postgres')('two worker processes share one Postgres without delivering anything twice', async () => {
    const storage = await freshStorage();
    cleanups.push(() => storage.drop());
    const a = await startGateway({}, storage);
    cleanups.push(() => a.close());
    const b = await startGateway({}, storage);
    cleanups.push(() => b.close());
    const s = await sink(() => ({ status: 200, delayMs: 2 }));
    await endpoint(a, s);
    const inputs: EventInput[] = [];
    for (let i = 0; i < 150; i++) inputs.push(ev('message.received', `cv_${i % 10}`, { text: `m${i}` }));
    await Promise.all([a.append(inputs.slice(0, 75)), b.append(inputs.slice(75))]);
    await s.waitFor(150, 15_000);
    await new Promise((r) => setTimeout(r, 500));
    const ids = s.requests.map((r) => r.headers['webhook-id']);
    expect(new Set(ids).size).toBe(150);
    expect(ids).toHaveLength(150);
  });
});

afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
