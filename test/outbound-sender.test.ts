import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../src/core/ids.js';
import type { MessageRow } from '../src/messaging/views.js';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { customerWrites, events, expectNoViolations, reply, sentAtEmulator, settled, stats, waitFor, waitStatus } from './helpers/outbound.js';

/** The sender against TikTok's failures: token expiry, revocation, server errors, refusals; pacing and fairness. */
describe('sender', () => {
  let gw: TestGateway;
  let account: { id: string; external_id: string };

  beforeAll(async () => {
    gw = await startTestGateway();
    account = await gw.connect('send_shop');
  });
  afterEach(async () => {
    await settled(gw);
    await expectNoViolations(gw);
  });
  afterAll(async () => { await gw?.close(); });

  const statusesOf = async (id: string) => (await events(gw, 'message.status')).filter((e) => e.message_id === id).map((e) => e.status);

  /** An API text reply written as a stopped process leaves it, its quota taken in its conversation; returns its id. */
  const storeOutbound = async (conversationId: string, row: Pick<MessageRow, 'text' | 'status' | 'attempts' | 'created_at' | 'updated_at'> & Partial<MessageRow>) => {
    const id = newId('msg');
    const db = gw.server.ctx.database.db;
    await db.insertInto('messages').values({
      id, conversation_id: conversationId, account_id: account.id, direction: 'outbound', provider_message_id: null,
      type: 'text', media: null, extra: null, source: 'api', error: null, idempotency_key: null,
      request_hash: null, reply_to: null, sent_by: null, next_attempt_at: null, counted_in_window: 1, provider_timestamp: null, ...row,
    }).execute();
    await db.updateTable('conversations').set({ outbound_since_inbound: sql<number>`outbound_since_inbound + 1` }).where('id', '=', conversationId).execute();
    return id;
  };

  it('40102 (access token expired at TikTok): refreshes the token once and sends', async () => {
    const conv = await customerWrites(gw, 'send_shop', 'mia');
    const before = await gw.server.ctx.database.db.selectFrom('accounts').select('token_version').where('id', '=', account.id).executeTakeFirstOrThrow();
    await gw.control('tokens/expire', { business: 'send_shop' });
    const r = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'after expiry' });
    const m = await waitStatus(gw, r.body.id, 'sent');
    expect(m.attempts).toBe(1);
    const after = await gw.server.ctx.database.db.selectFrom('accounts').select(['token_version', 'status']).where('id', '=', account.id).executeTakeFirstOrThrow();
    expect(after.token_version).toBe(before.token_version + 1);
    expect(after.status).toBe('active');
    expect(await sentAtEmulator(gw, conv.external_id)).toHaveLength(1);
  });

  it('5xxxx errors and 40100 are retried with backoff; the conversation waits behind its head', async () => {
    const conv = await customerWrites(gw, 'send_shop', 'noa');
    await gw.control('faults', { endpoint: 'business/message/send/', code: 50002, times: 2 });
    const first = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'first' });
    const second = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'second' });
    const m = await waitStatus(gw, first.body.id, 'sent');
    expect(m.attempts).toBe(3);
    await waitStatus(gw, second.body.id, 'sent');
    expect((await sentAtEmulator(gw, conv.external_id)).map((s) => s.text.body)).toEqual(['first', 'second']);
    expect(await statusesOf(first.body.id)).toEqual(['sending', 'queued', 'sending', 'queued', 'sending', 'sent']);
    const retry = (await events(gw, 'message.status')).find((e) => e.message_id === first.body.id && e.status === 'queued');
    expect(retry!.error).toMatchObject({ provider_code: 50002, retrying: true });

    await gw.control('faults', { endpoint: 'business/message/send/', code: 40100, times: 1 });
    const third = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'third' });
    expect((await waitStatus(gw, third.body.id, 'sent')).attempts).toBe(2);
    await gw.control('faults', { endpoint: 'business/message/send/', code: 51065, times: 1 });
    const fourth = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'fourth' });
    expect((await waitStatus(gw, fourth.body.id, 'sent')).attempts).toBe(2);
  });

  it('fails for good after the last retry, and on refusals (40064) with the reason; the quota comes back', async () => {
    const conv = await customerWrites(gw, 'send_shop', 'ola');
    await gw.control('faults', { endpoint: 'business/message/send/', code: 50000, times: 5 });
    const doomed = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'never arrives' });
    const failed = await waitStatus(gw, doomed.body.id, 'failed');
    expect(failed.attempts).toBe(5); // the first try and the 4 retries of DMGATE_SEND_RETRY_SCHEDULE
    expect(failed.error).toMatchObject({ code: 'provider_error', provider_code: 50000 });

    await gw.control('faults', { endpoint: 'business/message/send/', code: 40064, times: 1, message: 'You are sending messages too fast. Take a rest.' });
    const capped = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'refused' });
    const after = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'goes through' });
    const f = await waitStatus(gw, capped.body.id, 'failed');
    expect(f.attempts).toBe(1);
    expect(f.error).toMatchObject({ code: 'daily_cap_reached', provider_code: 40064 });
    expect(f.error.message).toMatch(/Take a rest/);
    await waitStatus(gw, after.body.id, 'sent');
    const failedEvent = (await events(gw, 'message.status')).find((e) => e.message_id === capped.body.id && e.status === 'failed');
    expect(failedEvent!.error).toMatchObject({ code: 'daily_cap_reached', provider_code: 40064 });
    // Two failed replies gave their quota back: only the one sent counts.
    expect((await gw.api('GET', `/v1/conversations/${conv.id}`)).body.window.quota_remaining).toBe(9);
    expect(await sentAtEmulator(gw, conv.external_id)).toHaveLength(1);
  });

  it('40105 (token revoked): account needs_reauth with its event, queued replies held (not failed), sent after reconnecting', async () => {
    const a = await customerWrites(gw, 'send_shop', 'pia');
    const b = await customerWrites(gw, 'send_shop', 'quin');
    await gw.control('tokens/revoke', { business: 'send_shop' });
    // Accepted together: the first send meets the revoked token while the others wait in the queue.
    const results = await Promise.all(([[a, 'a1'], [a, 'a2'], [b, 'b1'], [a, 'a3']] as const)
      .map(([conv, text]) => reply(gw, { conversation_id: conv.id, type: 'text', text })));
    const accepted = results.filter((r) => r.status === 202);
    expect(accepted.length).toBeGreaterThanOrEqual(2);
    const ids = accepted.map((r) => r.body.id as string);
    for (const id of ids) await waitStatus(gw, id, 'held');
    const acct = await gw.api('GET', `/v1/accounts/${account.id}`);
    expect(acct.body.status).toBe('needs_reauth');
    expect((await events(gw, 'account.needs_reauth')).filter((e) => e.account_id === account.id)).toHaveLength(1);
    const refused = await reply(gw, { conversation_id: b.id, type: 'text', text: 'while revoked' });
    expect(refused.status).toBe(422);
    expect(refused.body.error.code).toBe('account_needs_reauth');
    for (const id of ids) {
      const statuses = await statusesOf(id);
      expect(statuses[statuses.length - 1]).toBe('held');
      expect(statuses).not.toContain('failed');
    }
    // Replies that never reached TikTok went straight from queued to held.
    expect((await Promise.all(ids.map(statusesOf))).some((st) => st.join() === 'held')).toBe(true);
    expect(await sentAtEmulator(gw, a.external_id)).toHaveLength(0);

    await gw.connect('send_shop');
    for (const id of ids) await waitStatus(gw, id, 'sent');
    const order = accepted.map((r) => r.body).filter((m) => m.conversation_id === a.id).sort((x, y) => (x.id < y.id ? -1 : 1)).map((m) => m.text);
    expect((await sentAtEmulator(gw, a.external_id)).map((s) => s.text.body)).toEqual(order);
    expect((await gw.api('GET', `/v1/accounts/${account.id}`)).body.status).toBe('active');
  });

  it('paces every TikTok call per account and keeps other accounts moving (fair, FIFO per conversation)', async () => {
    await gw.connect('busy_shop');
    await gw.connect('quiet_shop');
    const convs = [];
    for (const name of ['r1', 'r2', 'r3']) convs.push(await customerWrites(gw, 'busy_shop', name));
    const quiet = await customerWrites(gw, 'quiet_shop', 'solo');
    const busy: string[] = [];
    for (let i = 0; i < 10; i++) {
      for (const c of convs) {
        const r = await reply(gw, { conversation_id: c.id, type: 'text', text: `busy ${c.id.slice(-4)} ${i}` });
        expect(r.status).toBe(202);
        busy.push(r.body.id);
      }
    }
    const q = await reply(gw, { conversation_id: quiet.id, type: 'text', text: 'quiet one' });
    await waitStatus(gw, q.body.id, 'sent');
    for (const id of busy) await waitStatus(gw, id, 'sent', 30000);
    const all = await sentAtEmulator(gw);
    const busyBiz = all.filter((s) => s.business_username === 'busy_shop');
    const quietIndex = all.findIndex((s) => s.business_username === 'quiet_shop');
    // The quiet account's reply did not wait for the busy account's 30.
    expect(quietIndex).toBeLessThan(all.indexOf(busyBiz[busyBiz.length - 1]));
    // Per conversation, TikTok got the replies in the order they were accepted.
    for (const c of convs) {
      const texts = (await sentAtEmulator(gw, c.external_id)).map((s) => s.text.body);
      expect(texts).toEqual(Array.from({ length: 10 }, (_, i) => `busy ${c.id.slice(-4)} ${i}`));
    }
    // Never more than 10 calls of one business in a second (the emulator counts violations too).
    const ts = busyBiz.map((s) => s.timestamp as number);
    for (let i = 10; i < ts.length; i++) expect(ts[i] - ts[i - 10]).toBeGreaterThanOrEqual(1000);
    expect((await stats(gw)).violations.qps).toBe(0);
  });

  it('a reply left sending by a stopped process whose echo was recorded on its own is marked sent, not sent again', async () => {
    const conv = await customerWrites(gw, 'send_shop', 'quinn');
    const r = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'taken before the crash' });
    await waitStatus(gw, r.body.id, 'sent');
    const db = gw.server.ctx.database.db;
    const sent = await db.selectFrom('messages').selectAll().where('id', '=', r.body.id).executeTakeFirstOrThrow();
    // What a process killed between TikTok's answer and the write of the result leaves, once the
    // echo stopped waiting for that write (apply.ts): the reply still sending, the echo a message of its own.
    const now = gw.server.ctx.clock();
    await db.updateTable('messages').set({ status: 'sending', provider_message_id: null, provider_timestamp: null, updated_at: now - 121_000 })
      .where('id', '=', r.body.id).execute();
    await storeOutbound(conv.id, {
      text: 'taken before the crash', status: 'sent', attempts: 0, provider_message_id: sent.provider_message_id,
      provider_timestamp: sent.provider_timestamp, created_at: now, updated_at: now,
    });

    // The sender's sweep (every 10 s) finds it.
    const m = await waitStatus(gw, r.body.id, 'sent', 25_000);
    expect(m.provider_message_id).toBe(sent.provider_message_id);
    const outbound = await db.selectFrom('messages').select('id').where('conversation_id', '=', conv.id).where('direction', '=', 'outbound').execute();
    expect(outbound.map((o) => o.id)).toEqual([r.body.id]);
    expect(await sentAtEmulator(gw, conv.external_id)).toHaveLength(1);
    const c = await db.selectFrom('conversations').select('outbound_since_inbound').where('id', '=', conv.id).executeTakeFirstOrThrow();
    expect(c.outbound_since_inbound).toBe(1);
    expect((await events(gw, 'message.sent')).filter((e) => e.conversation_id === conv.id)).toHaveLength(1);
  }, 40_000);

  it('a reply left sending by a stopped process whose echo was lost is found among TikTok\'s messages and marked sent, not sent again', async () => {
    const conv = await customerWrites(gw, 'send_shop', 'rosa');
    const r = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'reached TikTok, echo lost' });
    await waitStatus(gw, r.body.id, 'sent');
    const db = gw.server.ctx.database.db;
    const sent = await db.selectFrom('messages').selectAll().where('id', '=', r.body.id).executeTakeFirstOrThrow();
    // A process killed between TikTok's answer and the write of the result, whose echo never came:
    // nothing here records TikTok's message, and no event told of the result.
    const lastSeq = Number((await db.selectFrom('events').select((eb) => eb.fn.max('seq').as('n')).executeTakeFirstOrThrow()).n);
    await db.updateTable('messages').set({ status: 'sending', provider_message_id: null, provider_timestamp: null, updated_at: gw.server.ctx.clock() - 121_000 })
      .where('id', '=', r.body.id).execute();
    const told = (await db.selectFrom('events').select(['seq', 'payload']).where('type', 'in', ['message.sent', 'message.status']).execute())
      .filter((e) => { const p = JSON.parse(e.payload) as Record<string, unknown>; return p.message_id === r.body.id && p.status !== 'sending'; });
    expect(told).toHaveLength(2);
    await db.deleteFrom('events').where('seq', 'in', told.map((e) => e.seq)).execute();

    // The sender's sweep (every 10 s) asks TikTok's list of the conversation's messages.
    const m = await waitStatus(gw, r.body.id, 'sent', 25_000);
    expect(m.provider_message_id).toBe(sent.provider_message_id);
    expect(await sentAtEmulator(gw, conv.external_id)).toHaveLength(1);
    const after = (await db.selectFrom('events').select('payload').where('seq', '>', lastSeq).orderBy('seq').execute()).map((e) => JSON.parse(e.payload) as Record<string, any>)
      .filter((e) => e.message_id === r.body.id);
    expect(after.map((e) => [e.event, e.status])).toEqual([['message.status', 'sent'], ['message.sent', 'sent']]);
  }, 40_000);

  it('a reply left sending by a stopped process that TikTok never got is queued again and sent once', async () => {
    const conv = await customerWrites(gw, 'send_shop', 'sami');
    const now = gw.server.ctx.clock();
    // Claimed (queued -> sending) by a process that died before its call reached TikTok.
    const id = await storeOutbound(conv.id, {
      text: 'never reached TikTok', status: 'sending', attempts: 1, next_attempt_at: now - 121_000, created_at: now - 121_000, updated_at: now - 121_000,
    });

    const m = await waitStatus(gw, id, 'sent', 25_000);
    expect(m.attempts).toBe(2);
    expect((await sentAtEmulator(gw, conv.external_id)).map((s) => s.text.body)).toEqual(['never reached TikTok']);
    const requeued = (await events(gw, 'message.status')).find((e) => e.message_id === id && e.status === 'queued');
    expect(requeued!.error).toMatchObject({ code: 'send_interrupted', message: expect.stringContaining('TikTok has no such message') });
  }, 40_000);

  it('each reply gets one message.sent with its source', async () => {
    await waitFor('events', async () => (await events(gw, 'message.sent')).length > 0);
    const sent = await events(gw, 'message.sent');
    const ids = sent.map((e) => e.message_id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(sent.every((e) => e.source === 'api')).toBe(true);
  });
});

/** More replies than one read of an account's queue holds, at a raised rate (TikTok grants some apps more than 10 QPS). */
describe('sender at volume', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({ env: { DMGATE_TIKTOK_QPS: '200' } });
    await gw.control('config', { qps: 200, echo_delay_ms: 300 });
    await gw.connect('volume_shop');
  });
  afterAll(async () => { await gw?.close(); });

  it('sends every one of 230 queued replies of one account, in order per conversation', async () => {
    const convs = [];
    for (let i = 0; i < 23; i++) convs.push(await customerWrites(gw, 'volume_shop', `v${i}`));
    const ids: string[] = [];
    for (let k = 0; k < 10; k++) {
      const batch = await Promise.all(convs.map((c) => reply(gw, { conversation_id: c.id, type: 'text', text: `volume ${k}` })));
      for (const r of batch) { expect(r.status).toBe(202); ids.push(r.body.id); }
    }
    await settled(gw, 30000);
    const rows = await gw.server.ctx.database.db.selectFrom('messages').select(['id', 'status']).where('id', 'in', ids).execute();
    expect(rows.filter((r) => r.status === 'sent' || r.status === 'read')).toHaveLength(ids.length);
    for (const c of convs) {
      expect((await sentAtEmulator(gw, c.external_id)).map((s) => s.text.body)).toEqual(Array.from({ length: 10 }, (_, k) => `volume ${k}`));
    }
    await expectNoViolations(gw);
  });

  it("acknowledges TikTok's echo of a recorded send without storing it again; one message and one message.sent per reply", async () => {
    // 23 customer messages and 230 echoes, all answered 200 by the gateway.
    await waitFor('the echoes', async () => { const w = (await stats(gw)).webhooks; return w.pending === 0 && w.delivered >= 253; });
    const sent = await events(gw, 'message.sent');
    expect(sent).toHaveLength(230);
    expect(new Set(sent.map((e) => e.message_id)).size).toBe(230);
    const outbound = await gw.server.ctx.database.db.selectFrom('messages').select((eb) => eb.fn.countAll<number>().as('n'))
      .where('direction', '=', 'outbound').executeTakeFirstOrThrow();
    expect(Number(outbound.n)).toBe(230);
    // The echoes came 300 ms after each send was recorded: none of them needed the inbound log.
    const stored = await gw.server.ctx.database.db.selectFrom('inbound_events').select((eb) => eb.fn.countAll<number>().as('n'))
      .where('event_type', '=', 'im_send_msg').executeTakeFirstOrThrow();
    expect(Number(stored.n)).toBe(0);
  });
});
