import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { customerWrites, events, expectNoViolations, reply, sentAtEmulator, settled, waitStatus } from './helpers/outbound.js';

const H = 3600_000;

/**
 * Seed 001's H1…H108 timeline through the gateway and the emulator, which share one clock that the
 * test moves through the hours. Every accepted reply must reach TikTok without a violation, and
 * every refused one must be refused by the gateway first, with the seed's reason.
 */
describe('the 48-hour window and the 10-reply quota (seed 001)', () => {
  let gw: TestGateway;
  const realStart = Date.now();
  let offset = 0;
  const clock = () => Date.now() + offset;
  /** Moves the shared clock to hour h of the timeline. */
  const hour = (h: number) => { offset = h * H - (Date.now() - realStart); };

  beforeAll(async () => {
    gw = await startTestGateway({ clock, emulator: { clock } });
    await gw.connect('window_shop');
  });
  afterEach(async () => {
    await settled(gw);
    await expectNoViolations(gw);
  });
  afterAll(async () => { await gw?.close(); });

  const windowOf = async (id: string) => (await gw.api('GET', `/v1/conversations/${id}`)).body.window;
  const send = async (convId: string, text: string) => {
    const r = await reply(gw, { conversation_id: convId, type: 'text', text });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    await waitStatus(gw, r.body.id, 'sent');
    return r.body;
  };

  it('replays H1…H108: 10 per window, expiry at H56, a fresh 10 at H60, closed at H108', async () => {
    hour(1);
    const conv = await customerWrites(gw, 'window_shop', 'seed_customer', 'CM1');
    expect(await windowOf(conv.id)).toMatchObject({ open: true, quota_limit: 10, quota_remaining: 10 });

    hour(2);
    for (const t of ['BM1', 'BM2', 'BM3']) await send(conv.id, t);
    expect((await windowOf(conv.id)).quota_remaining).toBe(7);

    hour(4);
    await send(conv.id, 'BM4');
    expect((await windowOf(conv.id)).quota_remaining).toBe(6);

    hour(7);
    await customerWrites(gw, 'window_shop', 'seed_customer', 'CM2');
    expect((await windowOf(conv.id)).quota_remaining).toBe(10);

    hour(8);
    await customerWrites(gw, 'window_shop', 'seed_customer', 'CM3');
    const afterCm3 = await windowOf(conv.id);
    expect(afterCm3.quota_remaining).toBe(10);
    expect(Date.parse(afterCm3.expires_at) - (realStart + 56 * H)).toBeLessThan(60_000);

    hour(10);
    await send(conv.id, 'BM1 (new cycle)');
    expect((await windowOf(conv.id)).quota_remaining).toBe(9);

    hour(39);
    await send(conv.id, 'BM2 (new cycle)');
    expect((await windowOf(conv.id)).quota_remaining).toBe(8);

    // (Each customer message lands a few ms after its hour mark, so the checks look a minute either side.)
    hour(56 - 1 / 60);
    expect(await windowOf(conv.id)).toMatchObject({ open: true, quota_remaining: 8 });
    hour(56 + 1 / 60);
    const closed = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'too late' });
    expect(closed.status).toBe(422);
    expect(closed.body.error).toMatchObject({ code: 'window_closed', details: { closed_at: afterCm3.expires_at } });
    expect(await windowOf(conv.id)).toMatchObject({ open: false, blocked: 'window_closed' });

    hour(60);
    await customerWrites(gw, 'window_shop', 'seed_customer', 'CM4');
    expect(await windowOf(conv.id)).toMatchObject({ open: true, quota_remaining: 10 });
    const batch = await Promise.all(Array.from({ length: 11 }, (_, i) => reply(gw, { conversation_id: conv.id, type: 'text', text: `H60 reply ${i}` })));
    expect(batch.filter((r) => r.status === 202)).toHaveLength(10);
    const eleventh = batch.find((r) => r.status !== 202)!;
    expect(eleventh.body.error).toMatchObject({ code: 'quota_exhausted', details: { limit: 10 } });
    for (const r of batch.filter((x) => x.status === 202)) await waitStatus(gw, r.body.id, 'sent');

    hour(107);
    expect((await reply(gw, { conversation_id: conv.id, type: 'text', text: 'still no quota' })).body.error.code).toBe('quota_exhausted');
    hour(108 + 1 / 60);
    expect((await reply(gw, { conversation_id: conv.id, type: 'text', text: 'closed again' })).body.error.code).toBe('window_closed');

    // TikTok received exactly the replies the gateway accepted.
    expect(await sentAtEmulator(gw, conv.external_id)).toHaveLength(3 + 1 + 1 + 1 + 10);
  });

  it('a customer message backdated 49 h gives window_closed; a new one gives a fresh 10', async () => {
    hour(200);
    const conv = await customerWrites(gw, 'window_shop', 'late_customer', 'old', { timestamp: clock() - 49 * H });
    const r = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'hello?' });
    expect(r.body.error).toMatchObject({ code: 'window_closed' });
    await customerWrites(gw, 'window_shop', 'late_customer', 'new');
    expect(await windowOf(conv.id)).toMatchObject({ open: true, quota_remaining: 10 });
    await send(conv.id, 'hello!');
  });

  it('replies queued before a customer message keep counting in the new window', async () => {
    hour(300);
    const conv = await customerWrites(gw, 'window_shop', 'chatty', 'first');
    await gw.control('tokens/revoke', { business: 'window_shop' });
    const held = await Promise.all(Array.from({ length: 6 }, (_, i) => reply(gw, { conversation_id: conv.id, type: 'text', text: `queued ${i}` })));
    expect(held.every((r) => r.status === 202)).toBe(true);
    for (const r of held) await waitStatus(gw, r.body.id, 'held');
    // The customer writes again: the quota resets, but the 6 held replies will be sent in this window.
    await customerWrites(gw, 'window_shop', 'chatty', 'second');
    expect((await windowOf(conv.id)).quota_remaining).toBe(4);
    await gw.connect('window_shop');
    for (const r of held) await waitStatus(gw, r.body.id, 'sent');
    const more = await Promise.all(Array.from({ length: 5 }, (_, i) => reply(gw, { conversation_id: conv.id, type: 'text', text: `more ${i}` })));
    expect(more.filter((r) => r.status === 202)).toHaveLength(4);
    await settled(gw);
  });

  it('a held reply whose window ended meanwhile fails (window_closed) without reaching TikTok, and frees its quota', async () => {
    hour(400);
    const conv = await customerWrites(gw, 'window_shop', 'patient', 'hi');
    await gw.control('tokens/revoke', { business: 'window_shop' });
    const r = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'delayed' });
    await waitStatus(gw, r.body.id, 'held');
    hour(449);
    await gw.connect('window_shop');
    const failed = await waitStatus(gw, r.body.id, 'failed');
    expect(failed.error).toMatchObject({ code: 'window_closed', provider_code: null });
    expect(await sentAtEmulator(gw, conv.external_id)).toHaveLength(0);
    const statuses = (await events(gw, 'message.status')).filter((e) => e.message_id === r.body.id).map((e) => e.status);
    expect(statuses[statuses.length - 1]).toBe('failed');
    await customerWrites(gw, 'window_shop', 'patient', 'back');
    expect((await windowOf(conv.id)).quota_remaining).toBe(10);
  });
});

describe('the window object under tiktok_48h_10_then_unlimited', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ env: { DMGATE_TIKTOK_WINDOW_POLICY: 'tiktok_48h_10_then_unlimited' } });
    await gw.connect('unlimited_shop');
  });
  afterAll(async () => { await gw?.close(); });

  it('shows no quota once the business replied before the customer\'s latest message, in the list and the conversation', async () => {
    const conv = await customerWrites(gw, 'unlimited_shop', 'returning', 'first question');
    const get = async () => (await gw.api('GET', `/v1/conversations/${conv.id}`)).body.window;
    const listed = async () => (await gw.api('GET', '/v1/conversations?limit=200')).body.data.find((c: { id: string }) => c.id === conv.id).window;
    expect(await get()).toMatchObject({ open: true, quota_limit: 10, quota_remaining: 10, blocked: null });
    const r = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'Happy to help' });
    expect(r.status).toBe(202);
    await waitStatus(gw, r.body.id, 'sent');
    // Replied, but not before the customer's latest message: the quota still counts.
    expect(await get()).toMatchObject({ quota_limit: 10, quota_remaining: 9 });
    await customerWrites(gw, 'unlimited_shop', 'returning', 'thanks, one more thing');
    expect(await get()).toMatchObject({ open: true, quota_limit: null, quota_remaining: null, blocked: null });
    expect(await listed()).toMatchObject({ open: true, quota_limit: null, quota_remaining: null, blocked: null });
    await settled(gw);
    await expectNoViolations(gw);
  });
});
