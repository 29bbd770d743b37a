import { performance } from 'node:perf_hooks';
import type { AppContext } from '../context.js';

/**
 * Per-account pacing of every TikTok messaging call (business/message/: send, media upload and
 * download, capabilities, the conversation and message lists of EEA webhooks, backfill and send
 * lookups): TikTok allows `perSecond` calls per business across all of them and answers 40100
 * past it, counting the calls it checks in any sliding second.
 *
 * Two mechanisms together:
 * - reservations on an even schedule (one slot every windowMs/perSecond ms, never a burst), so
 *   callers know their slot ahead and can prepare the call just in time;
 * - a guard that is exact whatever the network and server delays: TikTok checks a call at some
 *   moment between our sending it and our reading the answer, so a call can only count against a
 *   later one if it ended less than a window before the later one starts (or has not ended yet).
 *   A new call starts only while fewer than `perSecond` calls are in that state. Jitter, a slow
 *   answer or a late timer therefore cost a little rate, never a throttle.
 *
 * One gate per account per process. In a cluster the sender's account lease keeps an account's sends
 * (and their lookups and backfill) in one process; the few reads made elsewhere (an API process's
 * media downloads and image-capability questions, another worker's EEA reads) are paced within
 * their own process only, and a 40100 they meet is retried (EEA reads) or reported (the others).
 */
export const WINDOW_SLACK_MS = 2;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(1, Math.ceil(ms))));

interface Call { start: number; end: number | null }

export type Release = () => void;

export class RateGate {
  private nextSlot = -Infinity;
  private calls: Call[] = [];
  readonly interval: number;

  /**
   * `onAnswer` learns how long each call took, from its start to its release: the time by which
   * the guard holds the account's rate below `perSecond` (the calls of one window take
   * windowMs plus about that long).
   */
  constructor(
    readonly perSecond: number,
    readonly windowMs = 1000 + WINDOW_SLACK_MS,
    private readonly now: () => number = () => performance.now(),
    private readonly onAnswer?: (callMs: number) => void,
  ) {
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

  /**
   * Waits for the slot and for room (see above), then records the call as started. Make the call
   * right away and call the returned release when its answer (or failure) is in.
   */
  async fire(slot: number): Promise<Release> {
    for (;;) {
      const now = this.now();
      if (this.calls.length) this.calls = this.calls.filter((c) => c.end === null || c.end > now - this.windowMs);
      let wait = slot - now;
      if (this.calls.length >= this.perSecond) {
        let freeAt = Infinity;
        for (const c of this.calls) if (c.end !== null) freeAt = Math.min(freeAt, c.end + this.windowMs);
        // All in flight: one of them ends soon; look again shortly.
        wait = Math.max(wait, freeAt === Infinity ? 5 : freeAt - now);
      }
      if (wait <= 0) {
        const call: Call = { start: now, end: null };
        this.calls.push(call);
        return () => {
          if (call.end !== null) return;
          call.end = this.now();
          this.onAnswer?.(call.end - call.start);
        };
      }
      await sleep(wait);
    }
  }

  /** Calls that still count (for tests and metrics). */
  counting(): number {
    const now = this.now();
    return this.calls.filter((c) => c.end === null || c.end > now - this.windowMs).length;
  }
}

const registry = new WeakMap<AppContext, Map<string, RateGate>>();

/** The account's gate in this process, shared by all of the account's messaging calls made here. */
export function gateFor(ctx: AppContext, accountId: string): RateGate {
  let gates = registry.get(ctx);
  if (!gates) registry.set(ctx, gates = new Map());
  let gate = gates.get(accountId);
  if (!gate || gate.perSecond !== ctx.config.tiktokQps) {
    gate = new RateGate(ctx.config.tiktokQps, undefined, undefined, (ms) => ctx.metrics.providerCalls.observe(ms / 1000));
    gates.set(accountId, gate);
  }
  return gate;
}

/** Runs one TikTok call of the account in a rate slot (reserved now unless given). */
export async function paced<T>(gate: RateGate, fn: () => Promise<T>, slot = gate.reserve()): Promise<T> {
  const release = await gate.fire(slot);
  try {
    return await fn();
  } finally {
    release();
  }
}
