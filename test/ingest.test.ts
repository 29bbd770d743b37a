import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { startSink, type Sink } from './helpers/sink.js';
import { imReceiveText, postTiktokWebhook, tiktokSignature } from './helpers/tiktok.js';

/** TikTok DMs in, normalized signed events out: every inbound event type, through the emulator. */
describe('inbound TikTok webhooks', () => {
  let gw: TestGateway;
  let sink: Sink;
  let secret: string;
  let account: { id: string; external_id: string };

  const events = () => sink.requests.map((r) => JSON.parse(r.body) as Record<string, any>);
  const eventsOf = (type: string) => events().filter((e) => e.event === type);
  const waitForEvent = async (pred: (e: Record<string, any>) => boolean, timeoutMs = 10000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = events().find(pred);
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`no matching event; got ${events().map((e) => e.event).join(', ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const inboundCount = async () => Number((await gw.server.ctx.database.db.selectFrom('inbound_events')
    .select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);

  beforeAll(async () => {
    gw = await startTestGateway();
    sink = await startSink();
    account = await gw.connect('acme_shop');
    const ep = await gw.api('POST', '/v1/webhook-endpoints', { url: sink.url + '/hook', events: ['*'] });
    expect(ep.status).toBe(201);
    secret = ep.body.signing_secret;
  });
  afterAll(async () => {
    await gw?.close();
    await sink?.close();
  });

  it('delivers a text DM as one Standard-Webhooks-signed message.received', async () => {
    const sent = await gw.control('dm', { business: 'acme_shop', from: 'alice', text: 'size M?' });
    const evt = await waitForEvent((e) => e.event === 'message.received' && e.provider_message_id === sent.message_id);
    const req = sink.requests.find((r) => JSON.parse(r.body).id === evt.id)!;
    const verified = new Webhook(secret).verify(req.body, {
      'webhook-id': String(req.headers['webhook-id']), 'webhook-timestamp': String(req.headers['webhook-timestamp']), 'webhook-signature': String(req.headers['webhook-signature']),
    }) as Record<string, any>;
    expect(verified.id).toBe(evt.id);
    expect(Object.keys(verified).slice(0, 7)).toEqual(['id', 'event', 'account_id', 'provider', 'from', 'text', 'timestamp']);
    expect(verified).toMatchObject({ event: 'message.received', account_id: account.id, provider: 'tiktok', text: 'size M?', type: 'text' });
    expect(verified.timestamp).toBeLessThan(1e11); // seconds
    expect(verified.message_id).toMatch(/^msg_/);
    expect(verified.conversation_id).toMatch(/^cv_/);
    expect(verified.contact).toMatchObject({ username: 'alice', is_follower: false });
    expect(typeof verified.from).toBe('string');
    const conv = await gw.api('GET', `/v1/conversations/${verified.conversation_id}`);
    expect(conv.body.window).toMatchObject({ open: true, quota_limit: 10, quota_remaining: 10 });
    expect(eventsOf('conversation.created').some((e) => e.conversation_id === verified.conversation_id)).toBe(true);
    expect(eventsOf('contact.created').some((e) => e.contact.username === 'alice')).toBe(true);
  });

  it('stores images and serves them through GET /v1/media/{id}', async () => {
    const png = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63f8cfc0f01f0005000201a5f1c2a30000000049454e44ae426082', 'hex');
    const sent = await gw.control('dm', { business: 'acme_shop', from: 'bob', type: 'image', image: { data_base64: png.toString('base64') } });
    const evt = await waitForEvent((e) => e.event === 'message.received' && e.provider_message_id === sent.message_id);
    expect(evt.type).toBe('image');
    expect(evt.media.url).toMatch(/^\/v1\/media\/med_/);
    const res = await fetch(gw.url + evt.media.url, { headers: { authorization: `Bearer ${gw.key}` } });
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(png)).toBe(true);
    expect((await fetch(gw.url + evt.media.url)).status).toBe(401);
  });

  it('keeps stickers and videos as unsupported with a fallback text', async () => {
    const sticker = await gw.control('dm', { business: 'acme_shop', from: 'carol', type: 'sticker' });
    const video = await gw.control('dm', { business: 'acme_shop', from: 'carol', type: 'video' });
    const s = await waitForEvent((e) => e.provider_message_id === sticker.message_id);
    const v = await waitForEvent((e) => e.provider_message_id === video.message_id);
    for (const e of [s, v]) {
      expect(e.event).toBe('message.received');
      expect(e.type).toBe('unsupported');
      expect(e.text).toMatch(/open the conversation in TikTok/);
    }
    expect(s.extra.unsupported.original_type).toBe('sticker');
    expect(v.extra.unsupported.original_type).toBe('video');
    expect(v.media?.url ?? null).toMatch(/^\/v1\/media\//);
  });

  it('fetches EEA customers\' messages, which TikTok strips from the webhook', async () => {
    await gw.control('customers', { username: 'dieter', region: 'DE', display_name: 'Dieter' });
    const sent = await gw.control('dm', { business: 'acme_shop', from: 'dieter', text: 'Guten Tag' });
    const evt = await waitForEvent((e) => e.event === 'message.received' && e.text === 'Guten Tag');
    expect(evt.provider_message_id).toBe(sent.message_id);
    expect(evt.contact.username).toBe('dieter');
  });

  it('records referrals and attaches them to the first message after', async () => {
    const ref = await gw.control('referral', {
      business: 'acme_shop', from: 'erin', source: 'short_link', short_link: { ref: 'live_0611', prefilled_message: 'Hi from the live', prefilled_message_audit_status: 'PASS' },
    });
    const r = await waitForEvent((e) => e.event === 'conversation.referral' && e.contact?.username === 'erin');
    expect(r.referral).toMatchObject({ source: 'short_link', short_link: { ref: 'live_0611', prefilled_message: 'Hi from the live' } });
    await gw.control('dm', { business: 'acme_shop', from: 'erin', text: 'Hi from the live' });
    const m = await waitForEvent((e) => e.event === 'message.received' && e.contact?.username === 'erin');
    expect(m.referral).toMatchObject({ source: 'short_link', short_link: { ref: 'live_0611' } });
    expect(m.conversation_id).toBe(r.conversation_id);
    expect(ref.conversation_id).toBeTruthy();
    const contact = await gw.api('GET', `/v1/contacts/${m.contact.id}`);
    expect(contact.body.first_referral).toMatchObject({ source: 'short_link' });
    await gw.control('dm', { business: 'acme_shop', from: 'erin', text: 'second' });
    const second = await waitForEvent((e) => e.event === 'message.received' && e.text === 'second');
    expect(second.referral).toBeNull();
  });

  it('turns app replies into message.sent and read receipts into message.status', async () => {
    const dm = await gw.control('dm', { business: 'acme_shop', from: 'frank', text: 'hello?' });
    const recv = await waitForEvent((e) => e.event === 'message.received' && e.provider_message_id === dm.message_id);
    const reply = await gw.control('app-reply', { conversation_id: dm.conversation_id, text: 'Hi Frank, typed in the app' });
    const sentEvt = await waitForEvent((e) => e.event === 'message.sent' && e.provider_message_id === reply.message_id);
    expect(sentEvt).toMatchObject({ source: 'tiktok_app', text: 'Hi Frank, typed in the app', conversation_id: recv.conversation_id, type: 'text' });
    expect(sentEvt.to).toBe(recv.from);
    const conv = await gw.api('GET', `/v1/conversations/${recv.conversation_id}`);
    expect(conv.body.window.quota_remaining).toBe(9);
    await gw.control('read', { conversation_id: dm.conversation_id });
    const status = await waitForEvent((e) => e.event === 'message.status' && e.message_id === sentEvt.message_id);
    expect(status.status).toBe('read');
    const msg = (await gw.api('GET', `/v1/conversations/${recv.conversation_id}/messages`)).body.data.find((m: any) => m.id === sentEvt.message_id);
    expect(msg.status).toBe('read');
  });

  it('collapses the same webhook delivered three times into one message and one event per endpoint', async () => {
    const body = imReceiveText(account.external_id, { messageId: 'dup-msg-1', conversationId: 'dup+conv==', text: 'once only' });
    for (let i = 0; i < 3; i++) {
      const res = await postTiktokWebhook(gw.url, body, { 'tiktok-signature': tiktokSignature(body) });
      expect(res.status).toBe(200);
    }
    await waitForEvent((e) => e.event === 'message.received' && e.provider_message_id === 'dup-msg-1');
    await gw.drain();
    await new Promise((r) => setTimeout(r, 300));
    expect(events().filter((e) => e.event === 'message.received' && e.provider_message_id === 'dup-msg-1')).toHaveLength(1);
    const rows = await gw.server.ctx.database.db.selectFrom('messages').select('id').where('provider_message_id', '=', 'dup-msg-1').execute();
    expect(rows).toHaveLength(1);
  });

  it('refuses bad, stale and missing signatures and oversized bodies, storing nothing', async () => {
    const before = await inboundCount();
    const body = imReceiveText(account.external_id, { messageId: 'refused-1', conversationId: 'c-ref', text: 'nope' });
    expect((await postTiktokWebhook(gw.url, body, { 'tiktok-signature': tiktokSignature(body, undefined, 'wrong-secret') })).status).toBe(401);
    expect((await postTiktokWebhook(gw.url, body, { 'tiktok-signature': tiktokSignature(body, Math.floor(Date.now() / 1000) - 3600) })).status).toBe(401);
    const missing = await postTiktokWebhook(gw.url, body);
    expect(missing.status).toBe(401);
    expect(missing.body.error.code).toBe('unauthorized');
    const big = JSON.stringify({ event: 'im_receive_msg', pad: 'x'.repeat(2 * 1024 * 1024) });
    const tooBig = await postTiktokWebhook(gw.url, big, { 'tiktok-signature': tiktokSignature(big) });
    expect(tooBig.status).toBe(413);
    expect(tooBig.body.error.code).toBe('payload_too_large');
    const malformed = '{"event": "im_receive_msg", ';
    const bad = await postTiktokWebhook(gw.url, malformed, { 'tiktok-signature': tiktokSignature(malformed) });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ code: 'invalid_request' });
    expect(bad.body.error.request_id).toMatch(/^req_/);
    expect(await inboundCount()).toBe(before);
  });

  it('processes or ignores signed events whose fields have unexpected types, on both databases, never retrying them for ever', async () => {
    const biz = account.external_id;
    const content = (id: string, over: Record<string, unknown>) => JSON.stringify({
      type: 'text', message_id: id, timestamp: Date.now(), conversation_id: 'odd-types', text: { body: 'x' }, from: 'oddly', from_user: { id: 'odd-user', role: 'personal_account' },
      to: 'shop', to_user: { id: biz, role: 'business_account' }, unique_identifier: 'odd-user', is_follower: false, ...over,
    });
    const odd: [string, string, Record<string, unknown>][] = [
      ['im_receive_msg', 'odd-1', { timestamp: 'soon' }], ['im_receive_msg', 'odd-2', { timestamp: 1e20 }], ['im_receive_msg', 'odd-3', { text: { body: 42 } }],
      ['im_receive_msg', 'odd-4', { from: { a: 1 }, from_user: { id: ['a'] } }], ['im_receive_msg', 'odd-5', { conversation_id: 12345 }],
      ['im_mark_read_msg', 'odd-6', { read: { last_read_timestamp: 'x' } }], ['im_receive_msg', 'odd-7', { type: 'image', image: { media_id: 7 } }],
    ];
    for (const [event, id, over] of odd) {
      const body = JSON.stringify({ client_key: 'test_app', event, create_time: Math.floor(Date.now() / 1000), user_openid: biz, content: content(id, over) });
      expect((await postTiktokWebhook(gw.url, body, { 'tiktok-signature': tiktokSignature(body) })).status).toBe(200);
    }
    await gw.drain();
    const rows = await gw.server.ctx.database.db.selectFrom('inbound_events').select(['status', 'attempts', 'error']).where('business_id', '=', biz)
      .where('status', 'not in', ['processed', 'ignored']).execute();
    expect(rows).toEqual([]);
    const stored = await gw.server.ctx.database.db.selectFrom('messages').select(['provider_message_id', 'text']).where('provider_message_id', 'in', ['odd-1', 'odd-2', 'odd-3', 'odd-4', 'odd-5', 'odd-7']).orderBy('provider_message_id').execute();
    expect(stored.map((m) => m.provider_message_id)).toEqual(['odd-1', 'odd-2', 'odd-3', 'odd-4', 'odd-5', 'odd-7']);
    expect(stored.find((m) => m.provider_message_id === 'odd-3')!.text).toBe('42');
  });

  it('stores and acknowledges unknown events and unknown businesses, and ignores them', async () => {
    const unknown = JSON.stringify({ client_key: 'test_app', event: 'im_something_new', create_time: 1, user_openid: account.external_id, content: '{}' });
    const stranger = imReceiveText('no-such-business', { messageId: 'stranger-1', conversationId: 'c-x', text: 'hi' });
    for (const b of [unknown, stranger]) expect((await postTiktokWebhook(gw.url, b, { 'tiktok-signature': tiktokSignature(b) })).status).toBe(200);
    await gw.drain();
    const rows = await gw.server.ctx.database.db.selectFrom('inbound_events').select(['event_type', 'status'])
      .where('event_type', 'in', ['im_something_new']).execute();
    expect(rows).toEqual([{ event_type: 'im_something_new', status: 'ignored' }]);
    const strangerRow = await gw.server.ctx.database.db.selectFrom('inbound_events').select('status').where('business_id', '=', 'no-such-business').executeTakeFirstOrThrow();
    expect(strangerRow.status).toBe('ignored');
  });

  it('edits a contact\'s notes and attributes, and refuses bad input without changing anything', async () => {
    const contacts = await gw.api('GET', '/v1/contacts?q=alice');
    const alice = contacts.body.data.find((c: any) => c.username === 'alice');
    const set = await gw.api('PATCH', `/v1/contacts/${alice.id}`, { notes: 'Wears M', attributes: { vip: true, city: 'Jakarta' } });
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({ notes: 'Wears M', attributes: { vip: true, city: 'Jakarta' } });
    const removed = await gw.api('PATCH', `/v1/contacts/${alice.id}`, { attributes: { city: null } });
    expect(removed.body.attributes).toEqual({ vip: true });
    const bad = await gw.api('PATCH', `/v1/contacts/${alice.id}`, { notes: 'x', colour: 'red' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('invalid_request');
    // Attribute names are bounded (a record schema cannot say so), and so is their number.
    for (const attributes of [{ ['n'.repeat(101)]: 1 }, { '': 1 }, { notes: 'x'.repeat(1001) }, Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`a${i}`, i]))]) {
      const refused = await gw.api('PATCH', `/v1/contacts/${alice.id}`, { notes: 'changed', attributes });
      expect(refused.status).toBe(400);
      expect(refused.body.error).toMatchObject({ code: 'invalid_request', details: { field: expect.stringMatching(/^attributes/) } });
    }
    const after = await gw.api('GET', `/v1/contacts/${alice.id}`);
    expect(after.body).toMatchObject({ notes: 'Wears M', attributes: { vip: true } });
  });

  it('lists the event log with cursor pagination', async () => {
    const page1 = await gw.api('GET', '/v1/events?limit=2');
    expect(page1.status).toBe(200);
    expect(page1.body.data).toHaveLength(2);
    expect(page1.body.next_cursor).toBeTruthy();
    const page2 = await gw.api('GET', `/v1/events?limit=2&cursor=${encodeURIComponent(page1.body.next_cursor)}`);
    expect(page2.body.data[0].id).not.toBe(page1.body.data[0].id);
  });
});
