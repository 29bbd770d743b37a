import { describe, expect, it } from 'vitest';
import { IngressPressure } from './pressure.js';

describe('IngressPressure', () => {
  it('stays calm for a steady modest stream, even when a stall bunches a batch', () => {
    let now = 0;
    const p = new IngressPressure(() => now, 1500, 100);
    for (let i = 0; i < 100; i++) { now += 5; p.recordBatch(1); }
    p.recordBatch(12); // a 60 ms stall bunched a dozen webhooks into one commit
    expect(p.busy).toBe(false);
  });

  it('is busy during a burst and calms down within two windows after it', () => {
    let now = 0;
    const p = new IngressPressure(() => now, 1500, 100);
    for (let i = 0; i < 50; i++) { now += 2; p.recordBatch(10); } // 5,000/s
    expect(p.busy).toBe(true);
    now += 250;
    expect(p.busy).toBe(false);
  });
});
