import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { customerWrites, reply, waitStatus } from './helpers/outbound.js';
import { startSink, type Sink } from './helpers/sink.js';
import { waitFor } from './helpers/wait.js';
import { pruneOnce, startRetention } from '../src/retention.js';

/**
 * Retention deletes the logs around the conversations once old (raw webhooks, events, deliveries
 * that ended, attempts), never the history, and never what is still owed to an endpoint.
 */
describe('retention', () => {
  let gw: TestGateway;
  let sink: Sink;

  beforeAll(async () => {
    // A refused delivery waits a minute for its retry: still owed whenever the test prunes.
    gw = await startTestGateway({ env: { DMGATE_RETENTION_DAYS: '30', DMGATE_DELIVERY_SCHEDULE: '0,60' } });
    sink = await startSink((req) => ({ status: req.path === '/down' ? 503 : 200 }));
    await gw.connect('retained_shop');
  });
  afterAll(async () => {
    await gw?.close();
    await sink?.close();
  });

  const db = () => gw.server.ctx.database.db;
  const count = async (table: 'inbound_events' | 'events' | 'deliveries' | 'delivery_attempts') =>
    Number((await db().selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
  const eventTexts = async () => (await db().selectFrom('events').select('payload').where('type', '=', 'message.received').orderBy('seq').execute())
    .map((r) => JSON.parse(r.payload).text as string);

  it('deletes what is older than the cutoff and no longer owed, keeps the history and what an endpoint still waits for', async () => {
    const live = await gw.api('POST', '/v1/webhook-endpoints', { url: `${sink.url}/hook`, events: ['*'] });
    const old = await customerWrites(gw, 'retained_shop', 'ola', 'first, long ago');
    const r = await reply(gw, { conversation_id: old.id, type: 'text', text: 'answered long ago' });
    await waitStatus(gw, r.body.id, 'sent');
    // An endpoint that is down: what it has not had yet stays owed (retried).
    const off = await gw.api('POST', '/v1/webhook-endpoints', { url: `${sink.url}/down`, events: ['message.received'] });
    await customerWrites(gw, 'retained_shop', 'ola', 'second, long ago');
    await waitFor('the down endpoint to refuse once', async () => (await db().selectFrom('deliveries').select('attempts').where('endpoint_id', '=', off.body.id).executeTakeFirst())?.attempts);
    await waitFor('every delivery to the live endpoint made', async () => !(await db().selectFrom('deliveries').select('id')
      .where('endpoint_id', '=', live.body.id).where('status', '!=', 'succeeded').executeTakeFirst()));
    await new Promise((resolve) => setTimeout(resolve, 5));
    const cutoff = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 5));
    const recent = await customerWrites(gw, 'retained_shop', 'pia', 'just now');
    await waitFor('the recent delivery made', async () => (await db().selectFrom('deliveries').select('status').where('endpoint_id', '=', live.body.id)
      .where('created_at', '>', cutoff).execute()).some((d) => d.status === 'succeeded'));
    const messagesBefore = await count('events');
    expect(messagesBefore).toBeGreaterThan(5);

    // Two rows a statement, so that every table takes several batches.
    const pruned = await pruneOnce(gw.server.ctx, cutoff, { batch: 2 });
    // The raw webhooks of the two old DMs (and of the reply's echo, if it was stored) are gone; the recent one stays.
    expect(pruned.inbound_events).toBeGreaterThanOrEqual(2);
    expect(await db().selectFrom('inbound_events').select('seq').where('received_at', '<', cutoff).execute()).toEqual([]);
    expect(await count('inbound_events')).toBeGreaterThanOrEqual(1);
    // Events: those before the one the disabled endpoint still waits for are gone; it and later ones stay.
    expect(pruned.events).toBeGreaterThan(0);
    expect(await eventTexts()).toEqual(['second, long ago', 'just now']);
    // Deliveries that ended before the cutoff are gone with their attempts; the owed one stays.
    expect(pruned.deliveries).toBeGreaterThan(0);
    expect(pruned.delivery_attempts).toBeGreaterThan(0);
    const left = await db().selectFrom('deliveries').select(['endpoint_id', 'status', 'created_at']).execute();
    expect(left.filter((d) => d.created_at < cutoff)).toEqual([expect.objectContaining({ endpoint_id: off.body.id, status: 'pending' })]);
    // Attempts go by their own age, those of an owed delivery too.
    expect(await db().selectFrom('delivery_attempts').select('id').where('attempted_at', '<', cutoff).execute()).toEqual([]);
    expect(gw.logs.text).toContain(off.body.id);

    // The history is all there.
    const history = await gw.api('GET', `/v1/conversations/${old.id}/messages?order=asc`);
    expect(history.body.data.map((m: { text: string }) => m.text)).toEqual(['first, long ago', 'answered long ago', 'second, long ago']);
    expect((await gw.api('GET', `/v1/conversations/${recent.id}`)).status).toBe(200);
    const listed = await gw.api('GET', '/v1/events?type=message.received');
    expect(listed.body.data.map((e: { text: string }) => e.text)).toEqual(['second, long ago', 'just now']);

    // A second pass finds nothing more; deleting the endpoint releases what it held.
    expect(await pruneOnce(gw.server.ctx, cutoff)).toEqual({ inbound_events: 0, events: 0, deliveries: 0, delivery_attempts: 0 });
    expect((await gw.api('DELETE', `/v1/webhook-endpoints/${off.body.id}`)).status).toBe(204);
    const after = await pruneOnce(gw.server.ctx, cutoff, { batch: 2 });
    expect(after.events).toBeGreaterThan(0);
    expect(await eventTexts()).toEqual(['just now']);
  });

  it('the worker\'s pass deletes what is older than DMGATE_RETENTION_DAYS by the gateway\'s clock, and nothing newer', async () => {
    let now = Date.now();
    const later = await startTestGateway({ clock: () => now, env: { DMGATE_RETENTION_DAYS: '2' } });
    try {
      await later.connect('aging_shop');
      await customerWrites(later, 'aging_shop', 'abe', 'three days ago, soon');
      const before = await later.server.ctx.database.db.selectFrom('events').select('seq').execute();
      expect(before.length).toBeGreaterThan(0);
      // A day on: younger than two days, nothing goes.
      now += 86_400_000;
      const first = startRetention(later.server.ctx, { firstPassMs: 1 });
      await new Promise((r) => setTimeout(r, 300));
      await first.stop();
      expect(await later.server.ctx.database.db.selectFrom('events').select('seq').execute()).toHaveLength(before.length);
      // Three days on: it goes, said in the log.
      now += 2 * 86_400_000;
      const second = startRetention(later.server.ctx, { firstPassMs: 1 });
      await waitFor('a retention pass', async () => later.logs.lines.some((l) => l.includes('retention: deleted')));
      await second.stop();
      expect(await later.server.ctx.database.db.selectFrom('events').select('seq').where('seq', '<=', before[before.length - 1].seq).execute()).toEqual([]);
      expect((await later.api('GET', '/v1/conversations')).body.data).toHaveLength(1);
    } finally {
      await later.close();
    }
  });
});
