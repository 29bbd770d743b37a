import { describe, expect, it } from 'vitest';
import { randomIdBytes, randomIdHex } from './random-pool.js';

describe('the random pool for ids', () => {
  it('draws random hex across pool refills without repeating itself', () => {
    const seen = new Set<string>();
    // 12 bytes each, 2000 draws: about six refills of the 4 KB pool.
    for (let i = 0; i < 2000; i++) {
      const id = randomIdHex(12);
      expect(id).toMatch(/^[0-9a-f]{24}$/);
      seen.add(id);
    }
    expect(seen.size).toBe(2000);
  });

  it('hands out bytes of their own: a refill does not change bytes already drawn', () => {
    const first = randomIdBytes(10);
    const copy = Uint8Array.from(first);
    for (let i = 0; i < 1000; i++) randomIdBytes(10); // several refills
    expect(first).toEqual(copy);
    expect(first).toHaveLength(10);
  });
});
