import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitBackfill } from './helpers/accounts.js';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { customerWrites, events, expectNoViolations, reply, sentAtEmulator, settled, stats, waitFor, waitStatus } from './helpers/outbound.js';

/**
 * Sends whose outcome TikTok did not make clear (no answer in time, an acceptance without its
 * message id): TikTok may have the reply, so it is looked up before it is sent again.
 */
describe('sends TikTok may have taken without saying so', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({ env: { DMGATE_TIKTOK_TIMEOUT_MS: '500' } });
    await gw.connect('unclear_shop');
  });
  afterEach(async () => {
    await gw.control('config', { send_delay_ms: 0 });
    await settled(gw);
    await expectNoViolations(gw);
  });
  afterAll(async () => { await gw?.close(); });

  const statusEvents = async (id: string) => (await events(gw, 'message.status')).filter((e) => e.message_id === id);

  it('a send that timed out after TikTok took it is found at TikTok and marked sent, not sent twice', async () => {
    const conv = await customerWrites(gw, 'unclear_shop', 'tess');
    // TikTok records the reply at once and answers after the gateway has stopped waiting.
    await gw.control('config', { send_delay_ms: 1500 });
    const pushed = (await stats(gw)).webhooks.delivered;
    const r = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'did this arrive?' });
    expect(r.status).toBe(202);
    await waitFor('the first attempt to time out', async () => (await gw.api('GET', `/v1/messages/${r.body.id}`)).body.error);
    await gw.control('config', { send_delay_ms: 0 });

    const m = await waitStatus(gw, r.body.id, 'sent');
    const atTikTok = await sentAtEmulator(gw, conv.external_id);
    expect(atTikTok.map((s) => s.text.body)).toEqual(['did this arrive?']);
    expect(m.provider_message_id).toBe(atTikTok[0].message_id);
    expect(m.attempts).toBe(2);

    await gw.drain();
    const statuses = await statusEvents(r.body.id);
    expect(statuses.map((e) => e.status)).toEqual(['sending', 'queued', 'sending', 'sent']);
    expect(statuses[1].error).toMatchObject({ code: 'send_unconfirmed', provider_code: null, retrying: true });
    expect(statuses[1].error.message).toMatch(/no answer within 500 ms/);
    expect(Date.parse(statuses[1].error.attempted_at)).toBeGreaterThan(0);
    expect((await events(gw, 'message.sent')).filter((e) => e.conversation_id === conv.id).map((e) => e.message_id)).toEqual([r.body.id]);
    // The echo of the first attempt (pushed once TikTok answered) is this reply's: one outbound message, one quota.
    await waitFor('the echo', async () => (await stats(gw)).webhooks.delivered > pushed);
    await waitFor('the echo processed', async () => !(await gw.server.ctx.database.db.selectFrom('inbound_events').select('seq')
      .where('event_type', '=', 'im_send_msg').where('status', '=', 'pending').executeTakeFirst()));
    const outbound = await gw.server.ctx.database.db.selectFrom('messages').select('id').where('conversation_id', '=', conv.id).where('direction', '=', 'outbound').execute();
    expect(outbound.map((o) => o.id)).toEqual([r.body.id]);
    expect((await gw.api('GET', `/v1/conversations/${conv.id}`)).body.window.quota_remaining).toBe(9);
  });

  it('an acceptance without a message id is looked up; TikTok has none, so the reply is sent again, once', async () => {
    const conv = await customerWrites(gw, 'unclear_shop', 'ugo');
    await gw.control('faults', { endpoint: 'business/message/send/', code: 0, times: 1 });
    const r = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'second try' });
    const m = await waitStatus(gw, r.body.id, 'sent');
    expect(m.attempts).toBe(2);
    const atTikTok = await sentAtEmulator(gw, conv.external_id);
    expect(atTikTok.map((s) => s.text.body)).toEqual(['second try']);
    expect(m.provider_message_id).toBe(atTikTok[0].message_id);
    await gw.drain();
    const queued = (await statusEvents(r.body.id)).find((e) => e.status === 'queued');
    expect(queued!.error).toMatchObject({ code: 'send_unconfirmed' });
    expect(queued!.error.message).toMatch(/without a message id/);
  });

  it('a reply held for reauthorization after an unclear attempt is looked up when the account is back, not sent twice', async () => {
    const account = await gw.connect('unclear_held_shop');
    const conv = await customerWrites(gw, 'unclear_held_shop', 'wyn');
    await gw.control('config', { send_delay_ms: 1500 });
    const r = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'held, then found' });
    // TikTok has the reply and has not answered yet. The business revokes the app now, well before
    // the gateway stops waiting (500 ms) and retries: the lookup and the send are refused (40105).
    await waitFor('TikTok to record the send', async () => (await sentAtEmulator(gw, conv.external_id)).length === 1);
    await gw.control('tokens/revoke', { business: 'unclear_held_shop' });
    await waitFor('the first attempt to time out', async () => (await gw.api('GET', `/v1/messages/${r.body.id}`)).body.error);
    await gw.control('config', { send_delay_ms: 0 });
    // Held at the retry: its lookup already finds the account revoked, or its send does.
    await waitStatus(gw, r.body.id, 'held');
    expect((await sentAtEmulator(gw, conv.external_id)).map((s) => s.text.body)).toEqual(['held, then found']);

    const before = await waitBackfill(gw, account.id);
    await gw.connect('unclear_held_shop');
    const m = await waitStatus(gw, r.body.id, 'sent');
    const atTikTok = await sentAtEmulator(gw, conv.external_id);
    expect(atTikTok.map((s) => s.text.body)).toEqual(['held, then found']);
    expect(m.provider_message_id).toBe(atTikTok[0].message_id);
    await gw.drain();
    expect((await events(gw, 'message.sent')).filter((e) => e.conversation_id === conv.id).map((e) => e.message_id)).toEqual([r.body.id]);
    // (The reconnection's backfill reads TikTok's lists too; the next test counts those reads.)
    await waitBackfill(gw, account.id, before.requested_at);
  });

  it('a refusal is retried as before, without asking TikTok first', async () => {
    const conv = await customerWrites(gw, 'unclear_shop', 'vic');
    await gw.control('faults', { endpoint: 'business/message/send/', code: 50002, times: 1 });
    const before = (await stats(gw)).calls;
    const r = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'plain retry' });
    expect((await waitStatus(gw, r.body.id, 'sent')).attempts).toBe(2);
    const after = (await stats(gw)).calls;
    const listCalls = (c: Record<string, number>) => Object.entries(c).filter(([k]) => k.includes('content/list')).reduce((n, [, v]) => n + v, 0);
    expect(listCalls(after) - listCalls(before)).toBe(0);
    expect((await sentAtEmulator(gw, conv.external_id))).toHaveLength(1);
  });
});
