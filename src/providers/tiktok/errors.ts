import type { ErrorAction } from '../types.js';

/** A TikTok API answer with a non-zero envelope code (TikTok answers errors with HTTP 200). */
export class TiktokApiError extends Error {
  constructor(readonly code: number, message: string, readonly requestId: string | null, readonly endpoint: string) {
    super(`TikTok ${endpoint} answered ${code}: ${message}`);
    this.name = 'TiktokApiError';
  }
}

/**
 * A transport failure: no envelope at all (network, HTTP 5xx, timeout). Always transient.
 * `mayHaveArrived`: the request went out and no clear refusal came back (a timeout, a reset, a 5xx
 * from a proxy, an acceptance without its result), so TikTok may have acted on it: a send must not
 * simply be repeated.
 */
export class TiktokNetworkError extends Error {
  constructor(message: string, readonly endpoint: string, readonly mayHaveArrived = false) {
    super(`TikTok ${endpoint} unreachable: ${message}`);
    this.name = 'TiktokNetworkError';
  }
}

/** reference/tiktok-api.md §5, mapped to what the sender and token keeper should do. */
export function classifyTiktokError(err: unknown): ErrorAction {
  if (err instanceof TiktokNetworkError) return 'retry';
  if (!(err instanceof TiktokApiError)) return 'retry';
  const c = err.code;
  if (c === 40102) return 'refresh';
  if (c === 40103 || c === 40105 || c === 40107 || c === 40104) return 'reauthorize';
  if (c === 40001 || c === 40118 || c === 40125 || c === 41000) return 'restricted';
  if (c === 40100 || c === 40016 || c === 40133 || c === 51065 || c === 60001 || c >= 50000) return 'retry';
  return 'refuse';
}
