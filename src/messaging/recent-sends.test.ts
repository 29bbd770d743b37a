import { describe, expect, it } from 'vitest';
import { RecentSends } from './recent-sends.js';

const settle = () => new Promise((r) => setImmediate(r));

describe('RecentSends', () => {
  it('knows recorded sends per business', async () => {
    const r = new RecentSends();
    r.recording('biz_a', 'm1', Promise.resolve());
    await settle();
    expect(r.recorded('biz_a', 'm1')).toBe(true);
    expect(r.recorded('biz_b', 'm1')).toBe(false);
    expect(r.recorded('biz_a', 'm2')).toBe(false);
  });

  it('forgets the oldest ids beyond its bound', async () => {
    const r = new RecentSends(3);
    for (const id of ['m1', 'm2', 'm3', 'm4']) r.recording('biz', id, Promise.resolve());
    await settle();
    expect(r.recorded('biz', 'm1')).toBe(false);
    expect(['m2', 'm3', 'm4'].every((id) => r.recorded('biz', id) === true)).toBe(true);
  });

  it('lets an echo wait for a result being written, and answers whether it was', async () => {
    const r = new RecentSends();
    let commit!: () => void;
    let abort!: (e: Error) => void;
    r.recording('biz', 'ok', new Promise<void>((res) => (commit = res)));
    r.recording('biz', 'lost', new Promise<void>((_res, rej) => (abort = rej)));
    const ok = r.recorded('biz', 'ok');
    const lost = r.recorded('biz', 'lost');
    expect(ok).toBeInstanceOf(Promise);
    commit();
    abort(new Error('write failed'));
    expect(await ok).toBe(true);
    expect(await lost).toBe(false);
    expect(r.recorded('biz', 'ok')).toBe(true);
    expect(r.recorded('biz', 'lost')).toBe(false);
  });
});
