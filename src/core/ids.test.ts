import { describe, expect, it } from 'vitest';
import { hasPrefix, idFloor, idTime, isId, newId } from './ids.js';

// First in the file: newId never goes back in time within a process, and the tests below make ids
// later than this one's.
describe('idFloor and idTime', () => {
  it('ids encode their creation time; idFloor bounds them', () => {
    const t = Date.UTC(2025, 5, 8, 12, 34, 56, 789);
    const id = newId('msg', t);
    expect(idTime(id)).toBe(t);
    expect(idFloor('msg', t) <= id).toBe(true);
    expect(idFloor('msg', t + 1) > id).toBe(true);
    expect(idTime(idFloor('msg', t))).toBe(t);
  });
});

describe('newId', () => {
  it('makes distinct ids that sort in creation order, across many refills of the random pool', () => {
    const ids: string[] = [];
    let ms = 1_700_000_000_000;
    // Half of them in new milliseconds (fresh random bytes), half within one (incremented).
    for (let i = 0; i < 2000; i++) ids.push(newId('msg', i % 2 ? ms : ++ms));
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    expect(ids.every((id) => hasPrefix(id, 'msg'))).toBe(true);
  });

  it('does not repeat the random part between milliseconds', () => {
    const parts = new Set<string>();
    for (let i = 0; i < 1000; i++) parts.add(newId('evt', 1_800_000_000_000 + i).slice(14));
    expect(parts.size).toBe(1000);
  });

  it('tells the shape of its ids from other text', () => {
    expect(isId(newId('cv'))).toBe(true);
    expect(isId(idFloor('msg', Date.now()))).toBe(true);
    for (const other of ['cv_', 'cv_01m95a47wh0qbt7q59gh4634j', 'cv_01m95a47wh0qbt7q59gh4634jvx', 'CV_01m95a47wh0qbt7q59gh4634jv', 'cv_01m95a47wh0qbt7q59gh4634ju', 'cv-01m95a47wh0qbt7q59gh4634jv', 'garbage']) {
      expect(isId(other), other).toBe(false);
    }
  });
});
