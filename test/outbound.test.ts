import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TEST_DB } from './helpers/db.js';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { customerWrites, events, expectNoViolations, JPEG, PNG, reply, sentAtEmulator, stats, waitFor, waitStatus } from './helpers/outbound.js';

/** Replies through the gateway and the emulator: accept, send, statuses, events. */
describe('POST /v1/messages: replies reach TikTok', () => {
  let gw: TestGateway;
  let account: { id: string; external_id: string };
  let images: Server;
  let imagesUrl: string;

  beforeAll(async () => {
    gw = await startTestGateway();
    account = await gw.connect('reply_shop');
    images = createServer((req, res) => {
      if (req.url === '/cat.png') { res.writeHead(200, { 'content-type': 'text/plain' }); res.end(PNG); return; }
      res.writeHead(404); res.end();
    });
    await new Promise<void>((r) => images.listen(0, '127.0.0.1', r));
    imagesUrl = `http://127.0.0.1:${(images.address() as AddressInfo).port}`;
  });
  afterEach(async () => { await expectNoViolations(gw); });
  afterAll(async () => {
    images?.close();
    await gw?.close();
  });

  it('queues a text reply (202), sends it, and reports sending → sent with one message.sent', async () => {
    const conv = await customerWrites(gw, 'reply_shop', 'amy', 'Is size M in stock?');
    const res = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'Yes, size M is in stock 👍' });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ conversation_id: conv.id, direction: 'outbound', type: 'text', status: 'queued', source: 'api', provider_message_id: null });
    expect(res.headers.get('location')).toBe(`/v1/messages/${res.body.id}`);
    const sent = await waitStatus(gw, res.body.id, 'sent');
    expect(sent.provider_message_id).toBeTruthy();
    expect(sent.error).toBeNull();
    const atTikTok = await sentAtEmulator(gw, conv.external_id);
    expect(atTikTok).toHaveLength(1);
    expect(atTikTok[0]).toMatchObject({ message_id: sent.provider_message_id, message_type: 'TEXT', text: { body: 'Yes, size M is in stock 👍' } });

    await gw.drain();
    const statuses = (await events(gw, 'message.status')).filter((e) => e.message_id === res.body.id).map((e) => e.status);
    expect(statuses).toEqual(['sending', 'sent']);
    const sentEvents = (await events(gw, 'message.sent')).filter((e) => e.conversation_id === conv.id);
    expect(sentEvents).toHaveLength(1);
    expect(sentEvents[0]).toMatchObject({ message_id: res.body.id, provider_message_id: sent.provider_message_id, source: 'api', type: 'text', text: 'Yes, size M is in stock 👍' });
    expect(sentEvents[0].contact.username).toBe('amy');

    const window = (await gw.api('GET', `/v1/conversations/${conv.id}`)).body.window;
    expect(window).toMatchObject({ open: true, quota_limit: 10, quota_remaining: 9 });
  });

  it('takes 10 of 11 concurrent replies and refuses the 11th with quota_exhausted; sends them in order', async () => {
    const conv = await customerWrites(gw, 'reply_shop', 'ben');
    const results = await Promise.all(Array.from({ length: 11 }, (_, i) => reply(gw, { conversation_id: conv.id, type: 'text', text: `reply ${i}` })));
    const accepted = results.filter((r) => r.status === 202);
    const refused = results.filter((r) => r.status !== 202);
    expect(accepted).toHaveLength(10);
    expect(refused).toHaveLength(1);
    expect(refused[0].status).toBe(422);
    expect(refused[0].body.error).toMatchObject({ code: 'quota_exhausted', details: { limit: 10, resets_on: 'next_customer_message' } });
    expect(refused[0].body.error.message).toMatch(/next customer message/);
    for (const r of accepted) await waitStatus(gw, r.body.id, 'sent');
    const order = accepted.map((r) => r.body).sort((a, b) => (a.id < b.id ? -1 : 1)).map((m) => m.text);
    expect((await sentAtEmulator(gw, conv.external_id)).map((s) => s.text.body)).toEqual(order);
  });

  it('keeps the quota exact when later replies race (one statement each on Postgres, retried under the lock when they collide)', async () => {
    const conv = await customerWrites(gw, 'reply_shop', 'bert');
    const first = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'first' });
    expect(first.status).toBe(202);
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => reply(gw, { conversation_id: conv.id, type: 'text', text: `race ${i}` })));
    const accepted = results.filter((r) => r.status === 202);
    expect(accepted).toHaveLength(9);
    expect(results.filter((r) => r.status === 422).map((r) => r.body.error.code)).toEqual(['quota_exhausted', 'quota_exhausted', 'quota_exhausted']);
    const row = await gw.server.ctx.database.db.selectFrom('conversations').select('outbound_since_inbound').where('id', '=', conv.id).executeTakeFirstOrThrow();
    expect(Number(row.outbound_since_inbound)).toBe(10);
    for (const r of accepted) await waitStatus(gw, r.body.id, 'sent');
    const order = [first.body, ...accepted.map((r) => r.body)].sort((a, b) => (a.id < b.id ? -1 : 1)).map((m) => m.text);
    expect((await sentAtEmulator(gw, conv.external_id)).map((s) => s.text.body)).toEqual(order);
  });

  it('Idempotency-Key: same key and body → the same message, sent once; other body → 409', async () => {
    const conv = await customerWrites(gw, 'reply_shop', 'cleo');
    const body = { conversation_id: conv.id, type: 'text', text: 'Your order shipped' };
    const a = await reply(gw, body, { 'idempotency-key': 'order-42-shipped' });
    const b = await reply(gw, { text: 'Your order shipped', type: 'text', conversation_id: conv.id }, { 'idempotency-key': 'order-42-shipped' });
    expect(a.status).toBe(202);
    expect(b.status).toBe(202);
    expect(b.body.id).toBe(a.body.id);
    expect(b.headers.get('idempotent-replayed')).toBe('true');
    await waitStatus(gw, a.body.id, 'sent');
    const c = await reply(gw, body, { 'idempotency-key': 'order-42-shipped' });
    expect(c.body).toMatchObject({ id: a.body.id, status: 'sent' });
    const d = await reply(gw, { ...body, text: 'Something else' }, { 'idempotency-key': 'order-42-shipped' });
    expect(d.status).toBe(409);
    expect(d.body.error).toMatchObject({ code: 'conflict', details: { message_id: a.body.id } });
    expect(await sentAtEmulator(gw, conv.external_id)).toHaveLength(1);
    // Concurrent duplicates resolve to one message too.
    const same = await Promise.all([1, 2, 3].map(() => reply(gw, { ...body, text: 'race' }, { 'idempotency-key': 'race-key' })));
    expect(new Set(same.map((r) => r.body.id)).size).toBe(1);
    await waitStatus(gw, same[0].body.id, 'sent');
    expect(await sentAtEmulator(gw, conv.external_id)).toHaveLength(2);
  });

  it('marks replies read when the customer reads, one message.status each', async () => {
    const conv = await customerWrites(gw, 'reply_shop', 'dora');
    const r1 = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'one' });
    const r2 = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'two' });
    await waitStatus(gw, r1.body.id, 'sent');
    await waitStatus(gw, r2.body.id, 'sent');
    await gw.control('read', { conversation_id: conv.external_id });
    await gw.drain();
    await waitStatus(gw, r1.body.id, 'read');
    await waitStatus(gw, r2.body.id, 'read');
    const reads = (await events(gw, 'message.status')).filter((e) => e.conversation_id === conv.id && e.status === 'read');
    expect(reads.map((e) => e.message_id).sort()).toEqual([r1.body.id, r2.body.id].sort());
  });

  it('records a reply read at once when the customer\'s read mark is already past its send (the receipt came first)', async () => {
    const conv = await customerWrites(gw, 'reply_shop', 'read_first');
    const plain = await customerWrites(gw, 'reply_shop', 'read_later');
    // A read receipt processed before the send's result is written leaves only the mark behind.
    await gw.server.ctx.database.db.updateTable('conversations').set({ customer_read_at: Date.now() + 3_600_000 }).where('id', '=', conv.id).execute();
    const [r, other] = await Promise.all([
      reply(gw, { conversation_id: conv.id, type: 'text', text: 'seen already' }),
      reply(gw, { conversation_id: plain.id, type: 'text', text: 'not seen yet' }),
    ]);
    expect((await waitStatus(gw, r.body.id, 'read')).provider_message_id).toBeTruthy();
    await waitStatus(gw, other.body.id, 'sent');
    await gw.drain();
    const statuses = await events(gw, 'message.status');
    const statusesOf = (id: string) => statuses.filter((e) => e.message_id === id).map((e) => e.status);
    expect(statusesOf(r.body.id)).toEqual(['sending', 'sent', 'read']);
    expect(statusesOf(other.body.id)).toEqual(['sending', 'sent']);
    const sent = (await events(gw, 'message.sent')).filter((e) => e.message_id === r.body.id);
    expect(sent).toHaveLength(1);
  });

  it.skipIf(TEST_DB !== 'postgres')('honours a read mark committed while the send\'s result waited for its conversation (a receipt applied meanwhile)', async () => {
    const db = gw.server.ctx.database.db;
    const conv = await customerWrites(gw, 'reply_shop', 'read_meanwhile');
    // The send call stays in flight long enough for a transaction to take the conversation first,
    // as a read receipt's does: it moves the mark, then finds no reply `sent` yet to mark read.
    await gw.control('config', { send_delay_ms: 800 });
    try {
      const r = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'read while in flight' });
      await waitStatus(gw, r.body.id, 'sending');
      await db.transaction().execute(async (tx) => {
        await sql`select id from conversations where id = ${conv.id} for update`.execute(tx);
        const me = (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(tx)).rows[0].pid;
        await waitFor('the result to wait for the conversation', async () =>
          (await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity where ${me} = any(pg_blocking_pids(pid))`.execute(db)).rows[0].n > 0);
        await tx.updateTable('conversations').set({ customer_read_at: Date.now() + 3_600_000 }).where('id', '=', conv.id).execute();
        const sentYet = await tx.selectFrom('messages').select('id').where('id', '=', r.body.id).where('status', '=', 'sent').execute();
        expect(sentYet).toEqual([]);
      });
      await waitStatus(gw, r.body.id, 'read');
      await gw.drain();
      const statuses = (await events(gw, 'message.status')).filter((e) => e.message_id === r.body.id).map((e) => e.status);
      expect(statuses).toEqual(['sending', 'sent', 'read']);
    } finally {
      await gw.control('config', { send_delay_ms: 0 });
    }
  });

  it('gives exactly one message.sent when TikTok\'s echo arrives before the send call returns', async () => {
    await gw.control('config', { echo_before_response: true });
    try {
      const conv = await customerWrites(gw, 'reply_shop', 'eve');
      const ids: string[] = [];
      for (const text of ['echo race 1', 'echo race 2', 'echo race 3']) ids.push((await reply(gw, { conversation_id: conv.id, type: 'text', text })).body.id);
      for (const id of ids) await waitStatus(gw, id, 'sent');
      await gw.drain();
      await waitFor('echoes processed', async () => {
        const n = await gw.server.ctx.database.db.selectFrom('inbound_events').select((eb) => eb.fn.countAll<number>().as('n'))
          .where('event_type', '=', 'im_send_msg').where('status', '=', 'pending').executeTakeFirstOrThrow();
        return Number(n.n) === 0;
      });
      const sent = (await events(gw, 'message.sent')).filter((e) => e.conversation_id === conv.id);
      expect(sent.map((e) => e.message_id).sort()).toEqual([...ids].sort());
      const rows = await gw.server.ctx.database.db.selectFrom('messages').select(['id', 'source']).where('conversation_id', '=', conv.id).where('direction', '=', 'outbound').execute();
      expect(rows).toHaveLength(3);
      const window = (await gw.api('GET', `/v1/conversations/${conv.id}`)).body.window;
      expect(window.quota_remaining).toBe(7);
    } finally {
      await gw.control('config', { echo_before_response: false });
    }
  });

  it('sends images (upload first): base64, a URL, a gateway media id', async () => {
    const conv = await customerWrites(gw, 'reply_shop', 'finn');
    const asked = (await stats(gw)).calls['business/message/capabilities/get/'] ?? 0;
    const a = await reply(gw, { conversation_id: conv.id, type: 'image', image: { data_base64: PNG.toString('base64') } });
    expect(a.status).toBe(202);
    expect(a.body.media).toMatchObject({ kind: 'image', content_type: 'image/png' });
    const b = await reply(gw, { conversation_id: conv.id, type: 'image', image: { url: `${imagesUrl}/cat.png` } });
    expect(b.status).toBe(202);
    const c = await reply(gw, { conversation_id: conv.id, type: 'image', image: { media_id: a.body.media.id } });
    expect(c.status).toBe(202);
    const d = await reply(gw, { conversation_id: conv.id, type: 'image', image: { data_base64: JPEG.toString('base64') } });
    expect(d.status).toBe(202);
    for (const m of [a, b, c, d]) await waitStatus(gw, m.body.id, 'sent');
    const atTikTok = await sentAtEmulator(gw, conv.external_id);
    expect(atTikTok.map((s) => s.message_type)).toEqual(['IMAGE', 'IMAGE', 'IMAGE', 'IMAGE']);
    expect(atTikTok.every((s) => s.image?.media_id)).toBe(true);
    const s = await stats(gw);
    expect(s.calls['business/message/media/upload/']).toBeGreaterThanOrEqual(4);
    expect(s.calls['business/message/capabilities/get/']).toBe(asked + 1); // cached on the conversation
    const media = await fetch(`${gw.url}${a.body.media.url}`, { headers: { authorization: `Bearer ${gw.key}` } });
    expect(Buffer.from(await media.arrayBuffer()).equals(PNG)).toBe(true);
  });

  it('sends share_post, template cards, quoted replies; links a numbered answer to a text template', async () => {
    const conv = await customerWrites(gw, 'reply_shop', 'gus', 'Which colours?');
    const customerMsg = await gw.server.ctx.database.db.selectFrom('messages').select('id').where('provider_message_id', '=', conv.message_id).executeTakeFirstOrThrow();
    const quoted = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'Black and white', reply_to: customerMsg.id });
    expect(quoted.status).toBe(202);
    const post = await reply(gw, { conversation_id: conv.id, type: 'share_post', share_post: { item_id: '7300000000000000001' } });
    const card = await reply(gw, { conversation_id: conv.id, type: 'template', template: { title: 'Pick a colour', buttons: [{ title: 'Black' }, { title: 'White', id: 'white' }] } });
    const asText = await reply(gw, { conversation_id: conv.id, type: 'template', template: { title: 'Pick a size', buttons: [{ title: 'S' }, { title: 'M' }, { title: 'L' }], as_text: true } });
    for (const m of [quoted, post, card, asText]) { expect(m.status).toBe(202); await waitStatus(gw, m.body.id, 'sent'); }
    expect(asText.body.text).toBe('Pick a size\n1. S\n2. M\n3. L');
    const atTikTok = await sentAtEmulator(gw, conv.external_id);
    expect(atTikTok[0]).toMatchObject({ message_type: 'TEXT', referenced_message_info: { referenced_message_id: conv.message_id } });
    expect(atTikTok[1]).toMatchObject({ message_type: 'SHARE_POST', share_post: { item_id: '7300000000000000001' } });
    expect(atTikTok[2]).toMatchObject({ message_type: 'TEMPLATE', template: { type: 'QA_BUTTON_CARD', title: 'Pick a colour', buttons: [{ type: 'REPLY', title: 'Black', id: '1' }, { type: 'REPLY', title: 'White', id: 'white' }] } });
    expect(atTikTok[3]).toMatchObject({ message_type: 'TEXT', text: { body: 'Pick a size\n1. S\n2. M\n3. L' } });

    const answer = await gw.control<{ message_id: string }>('dm', { business: 'reply_shop', from: 'gus', text: '2' });
    await gw.drain();
    const received = await waitFor('message.received', async () => (await events(gw, 'message.received')).find((e) => e.provider_message_id === answer.message_id));
    expect(received.extra.template_answer).toEqual({ message_id: asText.body.id, index: 2, id: '2', title: 'M' });
    const byTitle = await gw.control<{ message_id: string }>('dm', { business: 'reply_shop', from: 'gus', text: 'large' });
    const other = await gw.control<{ message_id: string }>('dm', { business: 'reply_shop', from: 'gus', text: 'l ' });
    await gw.drain();
    const r2 = await waitFor('message.received', async () => (await events(gw, 'message.received')).find((e) => e.provider_message_id === byTitle.message_id));
    expect(r2.extra?.template_answer ?? null).toBeNull();
    const r3 = await waitFor('message.received', async () => (await events(gw, 'message.received')).find((e) => e.provider_message_id === other.message_id));
    expect(r3.extra.template_answer).toMatchObject({ index: 3, title: 'L' });
  });

  it('GET /v1/messages/{id}; 404 for unknown messages and conversations', async () => {
    expect((await gw.api('GET', '/v1/messages/msg_nope')).status).toBe(404);
    const res = await reply(gw, { conversation_id: 'cv_nope', type: 'text', text: 'hi' });
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('not_found');
    expect(account.id).toMatch(/^acct_/);
  });

  it('takes first replies of the day to several conversations at once, texts and images mixed (batched and locking paths together)', async () => {
    const convs = [];
    for (const who of ['burst_a', 'burst_b', 'burst_c', 'burst_d']) convs.push(await customerWrites(gw, 'reply_shop', who));
    // (Copied: prom-client hands out its live counters.)
    const writes = async () => new Map((await gw.server.ctx.metrics.acceptWrites.get()).values.map((v) => [v.labels.path, v.value]));
    const before = await writes();
    const results = await Promise.all(convs.flatMap((c) => [
      reply(gw, { conversation_id: c.id, type: 'text', text: `hello ${c.id}` }),
      reply(gw, { conversation_id: c.id, type: 'image', image: { data_base64: PNG.toString('base64') } }),
      reply(gw, { conversation_id: c.id, type: 'text', text: `also ${c.id}` }),
    ]));
    expect(results.map((r) => r.status)).toEqual(results.map(() => 202));
    for (const r of results) await waitStatus(gw, r.body.id, 'sent');
    for (const c of convs) {
      const row = await gw.server.ctx.database.db.selectFrom('conversations').select('outbound_since_inbound').where('id', '=', c.id).executeTakeFirstOrThrow();
      expect(Number(row.outbound_since_inbound)).toBe(3);
      const mine = results.map((r) => r.body).filter((m) => m.conversation_id === c.id).sort((a, b) => (a.id < b.id ? -1 : 1));
      expect((await sentAtEmulator(gw, c.external_id)).map((m) => m.message_type.toLowerCase())).toEqual(mine.map((m) => m.type));
    }
    // How they were written: on Postgres the texts (first replies of the day) together, the images each in its own transaction.
    const after = await writes();
    const added = (path: string) => (after.get(path) ?? 0) - (before.get(path) ?? 0);
    if (gw.server.ctx.database.dialect === 'sqlite') expect(added('group_commit')).toBe(12);
    else {
      expect(added('batched')).toBeGreaterThan(0);
      expect(added('batched') + added('locking')).toBe(12);
    }
  });
});
