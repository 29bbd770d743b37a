import { parseJson } from '../db/database.js';
import type { Candidate, Row } from './pending-replies.js';

/** What a reply's failed attempt stores as its error, and how TikTok's refusals map to our codes. */
export interface SendError { code: string; message: string; provider_code: number | null; attempted_at?: string }

/**
 * A retry whose last attempt may have reached TikTok (TiktokNetworkError.mayHaveArrived) is stored
 * with this code and the time that attempt began: before it is sent again, TikTok is asked whether
 * it has it (Lane.adoptedEarlierSend), so a timed-out send does not reach the customer twice.
 */
export const UNCONFIRMED = 'send_unconfirmed';

/** When the first attempt that may have reached TikTok began, if the reply's last error says so. */
export function unconfirmedSince(c: Row): number | null {
  if (!c.error || c.attempts < 2) return null;
  const e = parseJson<Partial<SendError> | null>(c.error, null);
  const at = e?.code === UNCONFIRMED && typeof e.attempted_at === 'string' ? Date.parse(e.attempted_at) : NaN;
  return Number.isFinite(at) ? at : null;
}

export function holdReason(status: string): { code: string; message: string } {
  if (status === 'restricted') return { code: 'account_restricted', message: 'the account cannot use the messaging API; its replies wait' };
  if (status === 'disconnected') return { code: 'account_disconnected', message: 'the account is disconnected; its replies wait until it is connected again' };
  return { code: 'account_needs_reauth', message: 'the account must be reconnected; its replies wait until then' };
}

/** A refusal TikTok will repeat: fail with our code for it. */
export function refusal(c: Candidate, err: unknown, providerCode: number | null): SendError {
  const message = err instanceof Error ? err.message : String(err);
  switch (providerCode) {
    case 40064: return { code: 'daily_cap_reached', message: `TikTok refused the reply (daily conversation cap or messaging rules): ${message}`, provider_code: providerCode };
    case 40906:
    case 40908: return { code: 'media_unsupported', message, provider_code: providerCode };
    case 40907: return { code: 'media_too_large', message, provider_code: providerCode };
    case 40001:
    case 40118:
      if (c.type === 'image') return { code: 'image_not_allowed', message, provider_code: providerCode };
      return { code: 'account_restricted', message, provider_code: providerCode };
    default: return { code: 'provider_refused', message, provider_code: providerCode };
  }
}

