import { performance } from 'node:perf_hooks';
import type { AppContext } from '../context.js';

/**
 * Per-account pacing of TikTok messaging calls (send, media upload, capabilities): TikTok allows
 * `perSecond` calls per business and answers 40100 past it, counting over a sliding second.
 *
 * Two mechanisms together:
 * - reservations on an even schedule (one slot every window/perSecond ms, never a burst), so
 *   callers know their slot ahead and can prepare the call just in time;
 * - a sliding-log guard on the moments calls actually start: at most `perSecond` starts in any
 *   `windowMs`. A late timer cannot squeeze two seconds' worth of calls into one.
 *
 * `windowMs` is a little longer than a second: our start time and TikTok's arrival time differ by
 * network and queueing jitter, and the margin absorbs it (30 ms → 97 % of the allowed rate).
 * One gate per account per process; on PostgreSQL the account's lease makes it the only one.
 */
export const WINDOW_MARGIN_MS = 30;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(1, Math.ceil(ms))));

export class RateGate {
  private nextSlot = -Infinity;
  private readonly started: number[] = [];
  readonly interval: number;

  constructor(readonly perSecond: number, readonly windowMs = 1000 + WINDOW_MARGIN_MS, private readonly now: () => number = () => performance.now()) {
    this.interval = windowMs / perSecond;
  }

  /** Books the next slot; returns its time (on this gate's clock). */
  reserve(): number {
    const slot = Math.max(this.now(), this.nextSlot);
    this.nextSlot = slot + this.interval;
    return slot;
  }

  /** Gives back the latest reservation when it will not be used. */
  cancel(slot: number): void {
    if (this.nextSlot === slot + this.interval) this.nextSlot = Math.max(slot, this.now());
  }

  /** Milliseconds until a slot booked now would come. */
  delay(): number {
    return Math.max(0, this.nextSlot - this.now());
  }

  /** Waits for the slot and for room in the sliding window, then records the start. Call TikTok right after. */
  async fire(slot: number): Promise<void> {
    for (;;) {
      const now = this.now();
      while (this.started.length > 0 && this.started[0] <= now - this.windowMs) this.started.shift();
      const full = this.started.length >= this.perSecond ? this.started[0] + this.windowMs - now : 0;
      const wait = Math.max(slot - now, full);
      if (wait <= 0) {
        this.started.push(now);
        return;
      }
      await sleep(wait);
    }
  }

  /** reserve + fire: for calls made on the spot. */
  take(): Promise<void> {
    return this.fire(this.reserve());
  }

  /** Starts within the last windowMs (for tests and metrics). */
  recentStarts(): number[] {
    return [...this.started];
  }
}

const registry = new WeakMap<AppContext, Map<string, RateGate>>();

/** The account's gate in this process (shared by the sender and the accept path's capability lookups). */
export function gateFor(ctx: AppContext, accountId: string): RateGate {
  let gates = registry.get(ctx);
  if (!gates) registry.set(ctx, gates = new Map());
  let gate = gates.get(accountId);
  if (!gate || gate.perSecond !== ctx.config.tiktokQps) {
    gate = new RateGate(ctx.config.tiktokQps);
    gates.set(accountId, gate);
  }
  return gate;
}
