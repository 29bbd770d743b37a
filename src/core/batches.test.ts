import { describe, expect, it } from 'vitest';
import { Batches } from './batches.js';

describe('Batches', () => {
  it('runs what arrives in one turn together, the rest in later batches, never more than `parallel` at once', async () => {
    const seen: number[][] = [];
    let running = 0;
    let most = 0;
    const b = new Batches<number>(async (batch) => {
      running++;
      most = Math.max(most, running);
      seen.push(batch);
      await new Promise((r) => setTimeout(r, 5));
      running--;
    }, { parallel: 2, maxBatch: 3 });
    for (let i = 0; i < 5; i++) b.push(i);
    await b.idle();
    for (let i = 5; i < 7; i++) b.push(i);
    await b.idle();
    expect(seen).toEqual([[0, 1, 2], [3, 4], [5, 6]]);
    expect(most).toBe(2);
  });

  it('is idle at once when nothing was pushed', async () => {
    await new Batches<number>(async () => undefined, { parallel: 1, maxBatch: 10 }).idle();
  });
});
