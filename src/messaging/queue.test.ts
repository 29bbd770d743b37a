import { describe, expect, it } from 'vitest';
import { requestHash, utcDayStart } from './queue.js';

describe('queue helpers', () => {
  it('hashes requests by meaning, not key order', () => {
    expect(requestHash({ a: 1, b: { c: [1, 2], d: 'x' } })).toBe(requestHash({ b: { d: 'x', c: [1, 2] }, a: 1 }));
    expect(requestHash({ a: 1, b: undefined })).toBe(requestHash({ a: 1 }));
    expect(requestHash({ a: 1 })).not.toBe(requestHash({ a: 2 }));
  });

  it('UTC day start', () => {
    expect(utcDayStart(Date.UTC(2025, 0, 2, 23, 59))).toBe(Date.UTC(2025, 0, 2));
  });
});
