import { describe, expect, it } from 'vitest';
import { WINDOW_POLICIES, windowAt, type WindowInput } from './window.js';

const H = 3600 * 1000;
const T0 = Date.UTC(2025, 5, 8, 0, 0, 0); // H0; the seed's hours are offsets from it

/**
 * Seed 001's "Expired Windows Simulation" (H1…H108), replayed row by row against the default
 * policy with an injected clock. The conversation state is kept the way the gateway keeps it: the
 * latest customer message's time and the business messages counted since.
 */
describe('window policy tiktok_48h_10 (seed 001 timeline)', () => {
  const policy = WINDOW_POLICIES.tiktok_48h_10;
  let state: WindowInput = { lastInboundAt: null, outboundSinceInbound: 0 };
  const at = (hour: number) => windowAt(policy, state, T0 + hour * H);
  const customer = (hour: number) => { state = { lastInboundAt: T0 + hour * H, outboundSinceInbound: 0 }; };
  const business = (hour: number, n = 1) => {
    for (let i = 0; i < n; i++) {
      const w = at(hour);
      expect(w.blocked, `BM at H${hour}`).toBeNull();
      state = { ...state, outboundSinceInbound: state.outboundSinceInbound + 1 };
    }
  };

  it('replays H1…H108', () => {
    // H0: nobody wrote yet: a business cannot start the conversation.
    expect(at(0)).toMatchObject({ open: false, blocked: 'never_opened', quota_remaining: 0 });

    // H1: CM1 opens a 48-hour window with 10 messages.
    customer(1);
    expect(at(1)).toMatchObject({ open: true, quota_limit: 10, quota_remaining: 10, expires_at: T0 + 49 * H, blocked: null });

    // H2: BM1–BM3 → 7 left.
    business(2, 3);
    expect(at(2).quota_remaining).toBe(7);

    // H4: BM4 → 6 left.
    business(4);
    expect(at(4).quota_remaining).toBe(6);

    // H7: CM2 keeps the window open and resets the quota to 10.
    customer(7);
    expect(at(7)).toMatchObject({ open: true, quota_remaining: 10, expires_at: T0 + 55 * H });

    // H8: CM3: still 10; the window now ends at H56.
    customer(8);
    expect(at(8)).toMatchObject({ open: true, quota_remaining: 10, expires_at: T0 + 56 * H });

    // H10: BM1 of the new cycle → 9.
    business(10);
    expect(at(10).quota_remaining).toBe(9);

    // H39: BM2 → 8.
    business(39);
    expect(at(39)).toMatchObject({ open: true, quota_remaining: 8 });

    // Just before H56 the window is still open with 8 left.
    expect(at(56 - 1 / 3600)).toMatchObject({ open: true, quota_remaining: 8 });

    // H56: 48 hours after H8 (the LATEST customer message), the window is closed.
    expect(at(56)).toMatchObject({ open: false, blocked: 'window_closed', quota_remaining: 0, expires_at: T0 + 56 * H });
    expect(at(59)).toMatchObject({ open: false, blocked: 'window_closed' });

    // H60: CM4 reopens it with a fresh 10, valid until H108.
    customer(60);
    expect(at(60)).toMatchObject({ open: true, quota_limit: 10, quota_remaining: 10, expires_at: T0 + 108 * H });

    // H60–H108: ten messages, then the quota is used up (the 11th is refused) until the customer writes.
    for (let i = 0; i < 10; i++) {
      business(60 + i * 4);
      expect(at(60 + i * 4).quota_remaining).toBe(9 - i);
    }
    expect(at(100)).toMatchObject({ open: true, quota_remaining: 0, blocked: 'quota_exhausted' });

    // H108: closed again.
    expect(at(108)).toMatchObject({ open: false, blocked: 'window_closed' });
  });

  it('a customer message older than the latest one changes nothing (backdated)', () => {
    const s: WindowInput = { lastInboundAt: T0 + 8 * H, outboundSinceInbound: 2 };
    expect(windowAt(policy, s, T0 + 55 * H)).toMatchObject({ open: true, quota_remaining: 8 });
  });

  it('49 hours after the latest customer message is closed', () => {
    expect(windowAt(policy, { lastInboundAt: T0, outboundSinceInbound: 0 }, T0 + 49 * H)).toMatchObject({ open: false, blocked: 'window_closed', expires_at: T0 + 48 * H });
  });
});

describe('other window policies', () => {
  it('tiktok_48h_10_then_unlimited: no quota once the business had replied before the latest customer message', () => {
    const p = WINDOW_POLICIES.tiktok_48h_10_then_unlimited;
    expect(windowAt(p, { lastInboundAt: T0, outboundSinceInbound: 10 }, T0 + H)).toMatchObject({ blocked: 'quota_exhausted' });
    expect(windowAt(p, { lastInboundAt: T0, outboundSinceInbound: 50, repliedBefore: true }, T0 + H)).toMatchObject({ open: true, quota_remaining: null, blocked: null });
    expect(windowAt(p, { lastInboundAt: T0, outboundSinceInbound: 50, repliedBefore: true }, T0 + 48 * H)).toMatchObject({ open: false, blocked: 'window_closed' });
  });

  it('tiktok_48h_10_plus_3: three more after expiry', () => {
    const p = WINDOW_POLICIES.tiktok_48h_10_plus_3;
    expect(windowAt(p, { lastInboundAt: T0, outboundSinceInbound: 4 }, T0 + 50 * H)).toMatchObject({ open: true, quota_limit: 3, quota_remaining: 3 });
    expect(windowAt(p, { lastInboundAt: T0, outboundSinceInbound: 12 }, T0 + 50 * H)).toMatchObject({ open: true, quota_remaining: 1 });
    expect(windowAt(p, { lastInboundAt: T0, outboundSinceInbound: 13 }, T0 + 50 * H)).toMatchObject({ open: false, blocked: 'window_closed' });
  });
});
