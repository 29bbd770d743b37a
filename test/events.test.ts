import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig, type Env } from '../src/config.js';
import { serve, type RunningServer } from '../src/server.js';
import { createApiKey } from '../src/auth/api-keys.js';
import { appendEvents } from '../src/events/outbox.js';
import { newId } from '../src/core/ids.js';
import type { EventInput, StoredEvent } from '../src/events/types.js';
import { freshStorage, TEST_DB, type TestStorage } from './helpers/db.js';
import { openStream } from './helpers/sse.js';

interface Gw {
  server: RunningServer;
  storage: TestStorage;
  key: string;
  api<T = any>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  append(inputs: EventInput[]): Promise<StoredEvent[]>;
  close(): Promise<void>;
}

/** A gateway without the emulator: events come from appendEvents. */
async function startGateway(env: Env = {}, storage?: TestStorage): Promise<Gw> {
  const store = storage ?? await freshStorage();
  const config = loadConfig({
    DMGATE_PORT: '0', DMGATE_HOST: '127.0.0.1', DMGATE_DATA_DIR: store.dataDir, DATABASE_URL: store.databaseUrl,
    TIKTOK_APP_ID: 'test_app', TIKTOK_APP_SECRET: 'test_app_secret', DMGATE_LOG_LEVEL: 'silent', DMGATE_POLL_INTERVAL_MS: '50',
    DMGATE_SECRET_KEY: 'events-test-secret-key',
    ...env,
  });
  const server = await serve(config);
  const { key } = await createApiKey(server.ctx.database, 'test');
  return {
    server, storage: store, key,
    async api(method, path, body) {
      const res = await fetch(server.url + path, {
        method,
        headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try { parsed = JSON.parse(text); } catch { /* not JSON */ }
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
      if (!storage) await store.drop();
    },
  };
}

const [CV_A, CV_B, ACCT_1, ACCT_2] = [newId('cv'), newId('cv'), newId('acct'), newId('acct')];
const ev = (event: EventInput['event'], conversation_id: string | null, account_id = ACCT_1, text = 'hi'): EventInput =>
  ({ event, account_id, provider: 'tiktok', conversation_id, data: { text } });

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
async function setup(env: Env = {}, storage?: TestStorage) {
  const gw = await startGateway(env, storage);
  cleanups.push(() => gw.close());
  return gw;
}

describe('GET /v1/events', () => {
  it('pages through the log oldest first with an opaque cursor, and filters', async () => {
    const gw = await setup();
    const stored = await gw.append([
      ev('message.received', CV_A), ev('conversation.created', CV_B), ev('message.received', CV_B, ACCT_2),
      ev('message.sent', CV_A), ev('message.status', CV_A), ev('contact.created', null), ev('message.received', CV_A),
    ]);
    const ids = stored.map((s) => s.id);

    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: { status: number; body: any } = await gw.api('GET', `/v1/events?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.status).toBe(200);
      seen.push(...res.body.data.map((e: { id: string }) => e.id));
      cursor = res.body.next_cursor;
      if (cursor) expect(cursor).not.toMatch(/^\d+$/);
      pages++;
    } while (cursor && pages < 10);
    expect(seen).toEqual(ids);
    expect(pages).toBe(3);

    const first = await gw.api('GET', '/v1/events?limit=1');
    expect(first.body.data[0]).toEqual(JSON.parse(stored[0].payload));
    expect(first.body.data[0]).toMatchObject({ id: ids[0], event: 'message.received', account_id: ACCT_1, provider: 'tiktok', text: 'hi' });

    const byType = await gw.api('GET', '/v1/events?type=message.received');
    expect(byType.body.data.map((e: { id: string }) => e.id)).toEqual([ids[0], ids[2], ids[6]]);
    const byTypes = await gw.api('GET', '/v1/events?type=message.sent,message.status');
    expect(byTypes.body.data.map((e: { id: string }) => e.id)).toEqual([ids[3], ids[4]]);
    // A misspelled type is an error naming the types, not an empty page.
    const typo = await gw.api('GET', '/v1/events?type=message.sent,message.recieved');
    expect(typo.status).toBe(400);
    expect(typo.body.error).toMatchObject({ code: 'invalid_request', details: { field: 'type' } });
    expect(typo.body.error.details.allowed).toContain('message.received');
    expect(typo.body.error.message).toContain('"message.recieved"');
    const byConv = await gw.api('GET', `/v1/events?conversation_id=${CV_B}`);
    expect(byConv.body.data.map((e: { id: string }) => e.id)).toEqual([ids[1], ids[2]]);
    const byAccount = await gw.api('GET', `/v1/events?account_id=${ACCT_2}`);
    // A filter that is not one of our ids can match nothing: it is a typo, not an empty page.
    for (const q of ['conversation_id=cv_b', 'account_id=sandbox_shop', `account_id=${CV_B}`]) {
      const res = await gw.api('GET', `/v1/events?${q}`);
      expect(res.status, q).toBe(400);
      expect(res.body.error.details.field, q).toBe(q.split('=')[0]);
    }
    expect(byAccount.body.data.map((e: { id: string }) => e.id)).toEqual([ids[2]]);
    const after = await gw.api('GET', `/v1/events?after=${ids[4]}`);
    expect(after.body.data.map((e: { id: string }) => e.id)).toEqual([ids[5], ids[6]]);
    expect(after.body.next_cursor).toBeNull();

    expect((await gw.api('GET', '/v1/events?after=evt_unknown')).status).toBe(400);
    expect((await gw.api('GET', '/v1/events?cursor=garbage')).status).toBe(400);
    expect((await fetch(gw.server.url + '/v1/events')).status).toBe(401);
  });
});

describe('GET /v1/stream', () => {
  it('streams new events live, with the webhook body as data', async () => {
    const gw = await setup();
    const stream = await openStream(gw.server.url + '/v1/stream', { authorization: `Bearer ${gw.key}` });
    cleanups.push(() => stream.close());
    expect(stream.status).toBe(200);
    expect(stream.headers['content-type']).toMatch(/^text\/event-stream/);
    await new Promise((r) => setTimeout(r, 100));
    const stored = await gw.append([ev('message.received', CV_A), ev('message.sent', CV_A)]);
    await stream.waitFor(2);
    expect(stream.events.map((e) => e.id)).toEqual(stored.map((s) => s.id));
    expect(stream.events[0].event).toBe('message.received');
    expect(stream.events[0].data).toBe(stored[0].payload);
    const more = await gw.append([ev('conversation.resolved', CV_A)]);
    await stream.waitFor(3);
    expect(stream.events[2].id).toBe(more[0].id);
  });

  it('replays after Last-Event-ID, then continues live; filters by type', async () => {
    const gw = await setup();
    const stored = await gw.append([ev('message.received', CV_A), ev('message.sent', CV_A), ev('message.received', CV_A)]);
    const resumed = await openStream(gw.server.url + '/v1/stream', { authorization: `Bearer ${gw.key}`, 'last-event-id': stored[0].id });
    cleanups.push(() => resumed.close());
    const filtered = await openStream(`${gw.server.url}/v1/stream?types=message.received&last_event_id=${stored[0].id}`, { authorization: `Bearer ${gw.key}` });
    cleanups.push(() => filtered.close());
    const typo = await gw.api('GET', '/v1/stream?types=message.recieved');
    expect(typo.status).toBe(400);
    expect(typo.body.error.details.field).toBe('types');
    await resumed.waitFor(2);
    expect(resumed.events.map((e) => e.id)).toEqual([stored[1].id, stored[2].id]);
    await filtered.waitFor(1);

    const live = await gw.append([ev('message.sent', CV_A), ev('message.received', CV_B)]);
    await resumed.waitFor(4);
    expect(resumed.events.map((e) => e.id)).toEqual([stored[1].id, stored[2].id, live[0].id, live[1].id]);
    await filtered.waitFor(2);
    await new Promise((r) => setTimeout(r, 100));
    expect(filtered.events.map((e) => e.id)).toEqual([stored[2].id, live[1].id]);

    const unknown = await fetch(gw.server.url + '/v1/stream', { headers: { authorization: `Bearer ${gw.key}`, 'last-event-id': 'evt_nope' } });
    expect(unknown.status).toBe(400);
    expect((await fetch(gw.server.url + '/v1/stream')).status).toBe(401);
  });

  it('replays a large backlog in order without gaps while events keep arriving', async () => {
    const gw = await setup();
    const first = await gw.append([ev('message.received', CV_A)]);
    const batch: EventInput[] = [];
    for (let i = 0; i < 1200; i++) batch.push(ev('message.received', `cv_${i % 7}`, ACCT_1, `m${i}`));
    const backlog = await gw.append(batch);
    const stream = await openStream(gw.server.url + '/v1/stream', { authorization: `Bearer ${gw.key}`, 'last-event-id': first[0].id });
    cleanups.push(() => stream.close());
    const live: StoredEvent[] = [];
    for (let i = 0; i < 5; i++) live.push(...await gw.append([ev('message.sent', CV_A)]));
    await stream.waitFor(1205, 15000);
    await new Promise((r) => setTimeout(r, 100));
    expect(stream.events.map((e) => e.id)).toEqual([...backlog, ...live].map((s) => s.id));
  });

  it.skipIf(TEST_DB !== 'postgres')('carries events appended by another process (LISTEN/NOTIFY)', async () => {
    const storage = await freshStorage();
    cleanups.push(() => storage.drop());
    const writer = await setup({}, storage);
    const reader = await setup({}, storage);
    const stream = await openStream(reader.server.url + '/v1/stream', { authorization: `Bearer ${reader.key}` });
    cleanups.push(() => stream.close());
    await new Promise((r) => setTimeout(r, 100));
    const stored = await writer.append([ev('message.received', CV_A), ev('message.sent', CV_A)]);
    await stream.waitFor(2);
    expect(stream.events.map((e) => e.id)).toEqual(stored.map((s) => s.id));
  });

  it('ends streams when the server closes', async () => {
    const gw = await startGateway();
    const stream = await openStream(gw.server.url + '/v1/stream', { authorization: `Bearer ${gw.key}` });
    const closing = gw.close();
    await Promise.race([closing, new Promise((_, reject) => setTimeout(() => reject(new Error('close hung')), 5000))]);
    await stream.finished;
    expect(stream.ended).toBe(true);
  });
});
