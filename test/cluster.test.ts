import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { serve, type RunningServer } from '../src/server.js';
import { TEST_DB } from './helpers/db.js';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { customerWrites, reply, sentAtEmulator, waitFor, waitStatus } from './helpers/outbound.js';
import { startSink, type Sink } from './helpers/sink.js';
import { openStream } from './helpers/sse.js';

/**
 * dmgate as a cluster (PostgreSQL only: SQLite has one serving process): a process that serves only
 * HTTP (`--role api`) and one that runs only the background work (`--role worker`), sharing one
 * database. Everything a single process does must happen across the two.
 */
describe.skipIf(TEST_DB !== 'postgres')('a cluster: an API process and a worker process on one PostgreSQL', () => {
  let api: TestGateway;
  let worker: RunningServer;
  let sink: Sink;

  beforeAll(async () => {
    api = await startTestGateway({ role: 'api' });
    worker = await serve(loadConfig({ ...api.env, DMGATE_PORT: '0' }), { role: 'worker', logDestination: api.logs });
    sink = await startSink();
    await api.connect('cluster_shop');
  });
  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await sink?.close();
  });

  it('a DM received by the API process is stored, delivered signed and streamed; a reply accepted there is sent by the worker', async () => {
    const ep = await api.api('POST', '/v1/webhook-endpoints', { url: `${sink.url}/hook`, events: ['message.received', 'message.sent'] });
    expect(ep.status).toBe(201);
    const stream = await openStream(`${api.url}/v1/stream?types=message.received,message.sent`, { authorization: `Bearer ${api.key}` });
    try {
      // TikTok's webhook reaches the API process; only the worker applies it.
      const conv = await customerWrites(api, 'cluster_shop', 'cora', 'Do you ship to Lyon?');
      await sink.waitFor(1);
      const received = new Webhook(ep.body.signing_secret).verify(sink.requests[0].body, {
        'webhook-id': String(sink.requests[0].headers['webhook-id']),
        'webhook-timestamp': String(sink.requests[0].headers['webhook-timestamp']),
        'webhook-signature': String(sink.requests[0].headers['webhook-signature']),
      });
      expect(received).toMatchObject({ event: 'message.received', text: 'Do you ship to Lyon?', conversation_id: conv.id });
      // The worker's event reaches the API process's live stream.
      await stream.waitFor(1);
      expect(stream.events[0].event).toBe('message.received');

      const r = await reply(api, { conversation_id: conv.id, type: 'text', text: 'Yes, in 3 days.' });
      expect(r.status).toBe(202);
      const sent = await waitStatus(api, r.body.id, 'sent');
      const atTikTok = await sentAtEmulator(api, conv.external_id);
      expect(atTikTok.map((s) => s.text.body)).toEqual(['Yes, in 3 days.']);
      expect(sent.provider_message_id).toBe(atTikTok[0].message_id);
      await sink.waitFor(2);
      expect(JSON.parse(sink.requests[1].body)).toMatchObject({ event: 'message.sent', message_id: r.body.id, source: 'api' });
      await stream.waitFor(2);
      expect(stream.events.map((e) => e.event)).toEqual(['message.received', 'message.sent']);
      const window = (await api.api('GET', `/v1/conversations/${conv.id}`)).body.window;
      expect(window).toMatchObject({ open: true, quota_remaining: 9 });
    } finally {
      await stream.close();
    }
  });

  it('the API process runs no background work of its own: with the worker stopped, DMs wait (stored) until a worker takes its place', async () => {
    await worker.close();
    const dm = await api.control<{ message_id: string; conversation_id: string }>('dm', { business: 'cluster_shop', from: 'dora', text: 'Anyone there?' });
    const db = api.server.ctx.database.db;
    await waitFor('the webhook stored', async () => (await db.selectFrom('inbound_events').select('seq').where('status', '=', 'pending').executeTakeFirst()) !== undefined);
    await new Promise((r) => setTimeout(r, 500));
    expect(await db.selectFrom('messages').select('id').where('provider_message_id', '=', dm.message_id).executeTakeFirst()).toBeUndefined();

    // A worker started in its place picks up what waited, at once (the stopped one gave its leases back).
    worker = await serve(loadConfig({ ...api.env, DMGATE_PORT: '0' }), { role: 'worker', logDestination: api.logs });
    await api.drain(5000);
    await waitFor('the DM applied', async () => db.selectFrom('messages').select('id').where('provider_message_id', '=', dm.message_id).executeTakeFirst());
  });
});
