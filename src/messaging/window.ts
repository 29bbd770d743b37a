import type { WindowPolicyName } from '../config.js';
import type { WindowPolicy } from '../providers/types.js';

const HOUR = 3600 * 1000;

/**
 * The reply-window rule sets (DESIGN §4). TikTok's sources disagree on what happens after a
 * reply and after expiry, so each reading is a named value; the default follows seed 001.
 */
export const WINDOW_POLICIES: Record<WindowPolicyName, WindowPolicy> = {
  tiktok_48h_10: { name: 'tiktok_48h_10', windowMs: 48 * HOUR, quota: 10, afterExpiryQuota: 0, unlimitedAfterReply: false },
  tiktok_48h_10_then_unlimited: { name: 'tiktok_48h_10_then_unlimited', windowMs: 48 * HOUR, quota: 10, afterExpiryQuota: 0, unlimitedAfterReply: true },
  tiktok_48h_10_plus_3: { name: 'tiktok_48h_10_plus_3', windowMs: 48 * HOUR, quota: 10, afterExpiryQuota: 3, unlimitedAfterReply: false },
};

export interface WindowInput {
  /** Time of the latest customer message, or null when the customer never wrote. */
  lastInboundAt: number | null;
  /** Business messages counted since that customer message. */
  outboundSinceInbound: number;
  /** Whether the business had replied before the latest customer message (for unlimitedAfterReply). */
  repliedBefore?: boolean;
}

export interface WindowState {
  open: boolean;
  opened_at: number | null;
  expires_at: number | null;
  quota_limit: number | null;
  quota_remaining: number | null;
  /** Why nothing can be sent now, or null. */
  blocked: null | 'never_opened' | 'window_closed' | 'quota_exhausted';
}

/** Pure: the window at `now` for a conversation's state under a policy. */
export function windowAt(policy: WindowPolicy, input: WindowInput, now: number): WindowState {
  if (input.lastInboundAt === null) {
    return { open: false, opened_at: null, expires_at: null, quota_limit: policy.quota, quota_remaining: 0, blocked: 'never_opened' };
  }
  const expires = input.lastInboundAt + policy.windowMs;
  const sent = input.outboundSinceInbound;
  if (now >= expires) {
    const after = policy.afterExpiryQuota;
    if (after > 0) {
      // Messages sent inside the window are not known apart here; count all against quota + after.
      const remaining = Math.max(0, policy.quota + after - sent);
      const left = Math.min(after, remaining);
      return { open: left > 0, opened_at: input.lastInboundAt, expires_at: expires, quota_limit: after, quota_remaining: left, blocked: left > 0 ? null : 'window_closed' };
    }
    return { open: false, opened_at: input.lastInboundAt, expires_at: expires, quota_limit: policy.quota, quota_remaining: 0, blocked: 'window_closed' };
  }
  if (policy.unlimitedAfterReply && input.repliedBefore) {
    return { open: true, opened_at: input.lastInboundAt, expires_at: expires, quota_limit: null, quota_remaining: null, blocked: null };
  }
  const remaining = Math.max(0, policy.quota - sent);
  return { open: true, opened_at: input.lastInboundAt, expires_at: expires, quota_limit: policy.quota, quota_remaining: remaining, blocked: remaining > 0 ? null : 'quota_exhausted' };
}
