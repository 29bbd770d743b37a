import { describe, expect, it } from 'vitest';
import { newId } from '../core/ids.js';
import { idFloor, idTime, requestHash, utcDayStart } from './queue.js';

describe('queue helpers', () => {
  it('ids encode their creation time; idFloor bounds them', () => {
    const t = Date.UTC(2025, 5, 8, 12, 34, 56, 789);
    const id = newId('msg', t);
    expect(idTime(id)).toBe(t);
    expect(idFloor('msg', t) <= id).toBe(true);
    expect(idFloor('msg', t + 1) > id).toBe(true);
    expect(idTime(idFloor('msg', t))).toBe(t);
  });

  it('hashes requests by meaning, not key order', () => {
    expect(requestHash({ a: 1, b: { c: [1, 2], d: 'x' } })).toBe(requestHash({ b: { d: 'x', c: [1, 2] }, a: 1 }));
    expect(requestHash({ a: 1, b: undefined })).toBe(requestHash({ a: 1 }));
    expect(requestHash({ a: 1 })).not.toBe(requestHash({ a: 2 }));
  });

  it('UTC day start', () => {
    expect(utcDayStart(Date.UTC(2025, 0, 2, 23, 59))).toBe(Date.UTC(2025, 0, 2));
  });
});
