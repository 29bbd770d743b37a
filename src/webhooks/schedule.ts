/**
 * Retry timing. `schedule[n]` is the wait (seconds) before attempt n+1 (schedule[0] is the first
 * attempt, normally 0); after `schedule.length` attempts a delivery is dead-lettered.
 */
export function nextAttemptDelayMs(schedule: number[], attemptsMade: number): number | null {
  if (attemptsMade >= schedule.length) return null;
  return Math.round(schedule[attemptsMade] * 1000);
}

const MAX_RETRY_AFTER_MS = 24 * 3600 * 1000;

/** `Retry-After` as milliseconds from now: delta seconds or an HTTP date; null when absent or invalid. */
export function parseRetryAfter(value: string | string[] | undefined, nowMs: number): number | null {
  const raw = Array.isArray(value) ? value[0] : value;
  if (!raw) return null;
  const trimmed = raw.trim();
  let ms: number;
  if (/^\d+(\.\d+)?$/.test(trimmed)) {
    ms = Number(trimmed) * 1000;
  } else {
    const at = Date.parse(trimmed);
    if (Number.isNaN(at)) return null;
    ms = at - nowMs;
  }
  return Math.min(Math.max(0, Math.round(ms)), MAX_RETRY_AFTER_MS);
}

export type Outcome =
  | { kind: 'succeeded' }
  | { kind: 'retry'; at: number }
  | { kind: 'failed'; disableEndpoint: boolean };

/** What to do after an attempt: success on 2xx; 410 dead-letters and disables; else retry or give up. */
export function decide(schedule: number[], attemptsMade: number, status: number | null, retryAfter: string | string[] | undefined, nowMs: number): Outcome {
  if (status !== null && status >= 200 && status < 300) return { kind: 'succeeded' };
  if (status === 410) return { kind: 'failed', disableEndpoint: true };
  const delay = nextAttemptDelayMs(schedule, attemptsMade);
  if (delay === null) return { kind: 'failed', disableEndpoint: false };
  let wait = delay;
  if (status === 429 || status === 503) {
    const ra = parseRetryAfter(retryAfter, nowMs);
    if (ra !== null) wait = Math.max(wait, ra);
  }
  return { kind: 'retry', at: nowMs + wait };
}
