import { describe, expect, it } from 'vitest';
import { decide, nextAttemptDelayMs, parseRetryAfter } from './schedule.js';

describe('retry schedule', () => {
  const schedule = [0, 5, 300];
  it('waits schedule[n] after n attempts and gives up after the last', () => {
    expect(nextAttemptDelayMs(schedule, 1)).toBe(5000);
    expect(nextAttemptDelayMs(schedule, 2)).toBe(300_000);
    expect(nextAttemptDelayMs(schedule, 3)).toBeNull();
  });

  it('parses Retry-After as seconds or an HTTP date', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('7', now)).toBe(7000);
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:01:00 GMT', now)).toBe(60_000);
    expect(parseRetryAfter('soon', now)).toBeNull();
    expect(parseRetryAfter(undefined, now)).toBeNull();
  });

  it('decides outcomes', () => {
    const now = 1_000_000;
    expect(decide(schedule, 1, 204, undefined, now)).toEqual({ kind: 'succeeded' });
    expect(decide(schedule, 1, 500, undefined, now)).toEqual({ kind: 'retry', at: now + 5000 });
    expect(decide(schedule, 1, null, undefined, now)).toEqual({ kind: 'retry', at: now + 5000 });
    expect(decide(schedule, 1, 301, undefined, now)).toEqual({ kind: 'retry', at: now + 5000 });
    expect(decide(schedule, 3, 500, undefined, now)).toEqual({ kind: 'failed', disableEndpoint: false });
    expect(decide(schedule, 1, 410, undefined, now)).toEqual({ kind: 'failed', disableEndpoint: true });
    expect(decide(schedule, 1, 429, '60', now)).toEqual({ kind: 'retry', at: now + 60_000 });
    expect(decide(schedule, 1, 503, '1', now)).toEqual({ kind: 'retry', at: now + 5000 });
    expect(decide(schedule, 1, 500, '60', now)).toEqual({ kind: 'retry', at: now + 5000 });
  });
});
