import { describe, expect, it } from 'vitest';
import { paced, RateGate } from './rate-gate.js';

describe('RateGate', () => {
  it('spaces reservations evenly (never a burst)', () => {
    const now = 0;
    const gate = new RateGate(10, 1000, () => now);
    const slots = Array.from({ length: 25 }, () => gate.reserve());
    expect(slots.slice(0, 3)).toEqual([0, 100, 200]);
    for (let i = 1; i < slots.length; i++) expect(slots[i] - slots[i - 1]).toBeCloseTo(100, 6);
    expect(gate.delay()).toBeCloseTo(2500, 6);
  });

  it('never starts a call while N others ended less than a window ago or are still running', async () => {
    const gate = new RateGate(5, 200);
    const spans: { start: number; end: number }[] = [];
    // Calls that take 0–40 ms (a slow, jittery server), all booked at once.
    await Promise.all(Array.from({ length: 15 }, async (_, i) => {
      await paced(gate, async () => {
        const start = performance.now();
        await new Promise((r) => setTimeout(r, (i * 7) % 40));
        spans.push({ start, end: performance.now() });
      });
    }));
    // Wherever the server checked each call (between its start and end), no 200 ms holds more than 5:
    // when a call starts, fewer than 5 earlier ones ended within the last 200 ms (or still run).
    for (const s of spans) {
      const counting = spans.filter((o) => o !== s && o.start <= s.start && o.end > s.start - 199);
      expect(counting.length).toBeLessThan(5);
    }
  });

  it('gives back an unused last reservation', () => {
    let now = 1000;
    const gate = new RateGate(10, 1000, () => now);
    const a = gate.reserve();
    const b = gate.reserve();
    gate.cancel(b);
    expect(gate.reserve()).toBe(b);
    expect(a).toBe(1000);
    now = 5000;
    expect(gate.reserve()).toBe(5000);
  });

  it('reports each call\'s duration once, from its start to its release', async () => {
    let now = 0;
    const seen: number[] = [];
    const gate = new RateGate(10, 1000, () => now, (ms) => seen.push(ms));
    const release = await gate.fire(gate.reserve());
    now = 37;
    release();
    now = 100;
    release();
    await paced(gate, async () => { now = 120; }, gate.reserve());
    expect(seen).toEqual([37, 20]);
  });
});
