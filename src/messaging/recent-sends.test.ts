import { describe, expect, it } from 'vitest';
import { RecentSends } from './recent-sends.js';

describe('RecentSends', () => {
  it('knows recorded sends per business', () => {
    const r = new RecentSends();
    r.add('biz_a', 'm1');
    expect(r.has('biz_a', 'm1')).toBe(true);
    expect(r.has('biz_b', 'm1')).toBe(false);
    expect(r.has('biz_a', 'm2')).toBe(false);
  });

  it('forgets the oldest ids beyond its bound', () => {
    const r = new RecentSends(3);
    for (const id of ['m1', 'm2', 'm3', 'm4']) r.add('biz', id);
    expect(r.has('biz', 'm1')).toBe(false);
    expect(['m2', 'm3', 'm4'].every((id) => r.has('biz', id))).toBe(true);
  });
});
