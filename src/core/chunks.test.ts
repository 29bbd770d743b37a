import { describe, expect, it } from 'vitest';
import { chunks, LIST_CHUNK } from './chunks.js';

describe('chunks', () => {
  it('slices in order, the last slice holding the rest', () => {
    expect(chunks([1, 2, 3, 4, 5], 2)).toEqual([[1, 2], [3, 4], [5]]);
    expect(chunks([1, 2, 3, 4], 2)).toEqual([[1, 2], [3, 4]]);
  });

  it('gives nothing for an empty list', () => {
    expect(chunks([], 3)).toEqual([]);
  });

  it('takes LIST_CHUNK items a slice by default', () => {
    const sizes = chunks(Array.from({ length: LIST_CHUNK * 2 + 1 }, (_, i) => i)).map((c) => c.length);
    expect(sizes).toEqual([LIST_CHUNK, LIST_CHUNK, 1]);
  });

  it('refuses a size that is not a positive integer (0 would never end, 1.5 would overlap slices)', () => {
    expect(() => chunks([1], 0)).toThrow(RangeError);
    expect(() => chunks([1], 1.5)).toThrow(RangeError);
  });
});
