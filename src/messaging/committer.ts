import type { AppContext } from '../context.js';
import type { Tx } from '../db/database.js';
import { appendEvents } from '../events/outbox.js';
import type { EventInput } from '../events/types.js';

/**
 * Group commit for the sender: state changes (claims, results, retries) from many concurrent
 * sends are written in one transaction, with their events (the outbox), instead of paying one
 * commit each. Each operation still learns its own outcome: if the batch fails, its operations are
 * replayed one per transaction so one bad row cannot sink the others.
 */
export type Op<T> = (tx: Tx, events: EventInput[]) => Promise<T>;

interface Pending {
  op: Op<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** Keeps one transaction short: on SQLite it holds the only connection (and the event loop). */
const MAX_BATCH = 128;

export class Committer {
  private queue: Pending[] = [];
  private running: Promise<void> | null = null;

  constructor(private readonly ctx: AppContext) {}

  run<T>(op: Op<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ op: op as Op<unknown>, resolve: resolve as (v: unknown) => void, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.running) return;
    this.running = new Promise<void>((r) => setImmediate(r)).then(() => this.drain()).finally(() => {
      this.running = null;
      // Operations queued while the last batch was finishing.
      if (this.queue.length) this.schedule();
    });
  }

  /** Resolves when everything queued so far is written. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    while (this.queue.length) {
      const batch = this.queue.splice(0, MAX_BATCH);
      let appended = 0;
      try {
        const results: unknown[] = [];
        await this.ctx.database.db.transaction().execute(async (tx) => {
          const events: EventInput[] = [];
          for (const p of batch) {
            const own: EventInput[] = [];
            results.push(await p.op(tx, own));
            events.push(...own);
          }
          appended = (await appendEvents(tx, events, this.ctx.clock())).length;
        });
        batch.forEach((p, i) => p.resolve(results[i]));
      } catch (batchErr) {
        if (batch.length === 1) {
          batch[0].reject(batchErr);
        } else {
          for (const p of batch) {
            try {
              let result: unknown;
              await this.ctx.database.db.transaction().execute(async (tx) => {
                const own: EventInput[] = [];
                result = await p.op(tx, own);
                appended += (await appendEvents(tx, own, this.ctx.clock())).length;
              });
              p.resolve(result);
            } catch (err) {
              p.reject(err);
            }
          }
        }
      }
      if (appended) {
        this.ctx.bus.notify('deliveries');
        this.ctx.bus.notify('events');
      }
    }
  }
}
