import { randomBytes } from 'node:crypto';
import type { AppContext } from './context.js';
import { idFloor } from './core/ids.js';
import { releaseLease, tryAcquireLease } from './db/leases.js';
import { deliveryActive } from './webhooks/delivery-status.js';
import type { Worker } from './runtime.js';

/**
 * Retention (DMGATE_RETENTION_DAYS; 0, the default, keeps everything): the logs around the
 * conversations are deleted once older than that: TikTok's raw webhooks once applied, the event
 * log, webhook deliveries that ended (succeeded or dead-lettered) and every delivery attempt. The
 * history itself (accounts, contacts, conversations, messages, media) is never deleted here.
 *
 * Nothing still owed is deleted: a webhook waiting to be applied (pending, or held for an account
 * to reconnect) stays, and so does every event from the oldest one a delivery still has to carry.
 * An endpoint that keeps failing holds the event log until its deliveries are made or
 * dead-lettered; one disabled with deliveries pending holds it until it is re-enabled or deleted
 * (each pass says which). Attempts go by their own age.
 *
 * Rows go in batches, oldest first, each batch a statement of its own, so that a pass never holds
 * the database for long. Every table is walked by its time-ordered key (ids and seqs grow with
 * creation time): no scan of what is kept.
 */

export interface Pruned { inbound_events: number; events: number; deliveries: number; delivery_attempts: number }

/** Rows per statement. */
const DEFAULT_BATCH = 1000;
/** The first pass waits a little after start (a restarting process has more urgent work), then one an hour. */
const FIRST_PASS_MS = 5 * 60_000;
const PASS_EVERY_MS = 3600_000;
const LEASE_MS = 15 * 60_000;
const DAY_MS = 86_400_000;

const pause = () => new Promise<void>((resolve) => setTimeout(resolve, 5));

/** One pass: deletes what is older than `cutoffMs` (see above) and says how many rows of each table went. */
export async function pruneOnce(ctx: AppContext, cutoffMs: number, opts: { stopping?: () => boolean; batch?: number } = {}): Promise<Pruned> {
  const db = ctx.database.db;
  const stopping = opts.stopping ?? (() => false);
  const batch = opts.batch ?? DEFAULT_BATCH;
  const out: Pruned = { inbound_events: 0, events: 0, deliveries: 0, delivery_attempts: 0 };

  // TikTok's webhooks, once applied or ignored (or failed for good). Their seq grows with arrival.
  for (let after = 0; !stopping();) {
    const rows = await db.selectFrom('inbound_events').select(['seq', 'received_at', 'status']).where('seq', '>', after).orderBy('seq').limit(batch).execute();
    const done = rows.filter((r) => r.received_at < cutoffMs && (r.status === 'processed' || r.status === 'ignored' || r.status === 'failed')).map((r) => r.seq);
    if (done.length) out.inbound_events += Number((await db.deleteFrom('inbound_events').where('seq', 'in', done).executeTakeFirst()).numDeletedRows);
    if (rows.length < batch || rows.some((r) => r.received_at >= cutoffMs)) break;
    after = rows[rows.length - 1].seq;
    await pause();
  }

  // Delivery attempts, by their own age (those of a delivery still retried too).
  const attemptFloor = idFloor('att', cutoffMs);
  out.delivery_attempts = await inBatches(batch, stopping,
    async () => (await db.selectFrom('delivery_attempts').select('id').where('id', '<', attemptFloor).orderBy('id').limit(batch).execute()).map((r) => r.id),
    async (ids) => (await db.deleteFrom('delivery_attempts').where('id', 'in', ids).executeTakeFirst()).numDeletedRows);

  // Deliveries that ended; their ids carry their creation time.
  const deliveryFloor = idFloor('whd', cutoffMs);
  out.deliveries = await inBatches(batch, stopping,
    async () => (await db.selectFrom('deliveries').select('id').where('id', '<', deliveryFloor).where('status', 'in', ['succeeded', 'failed'])
      .orderBy('id').limit(batch).execute()).map((r) => r.id),
    async (ids) => (await db.deleteFrom('deliveries').where('id', 'in', ids).executeTakeFirst()).numDeletedRows);

  // Events, up to the oldest one a delivery still has to carry (deliveryActive: the partial index's own condition).
  const owed = await db.selectFrom('deliveries').select((eb) => eb.fn.min('event_seq').as('seq')).where(deliveryActive()).executeTakeFirst();
  const keepFrom = owed?.seq == null ? null : Number(owed.seq);
  const eventFloor = idFloor('evt', cutoffMs);
  out.events = await inBatches(batch, stopping,
    async () => {
      let q = db.selectFrom('events').select('seq').where('id', '<', eventFloor).orderBy('id').limit(batch);
      if (keepFrom !== null) q = q.where('seq', '<', keepFrom);
      return (await q.execute()).map((r) => r.seq);
    },
    async (seqs) => (await db.deleteFrom('events').where('seq', 'in', seqs).executeTakeFirst()).numDeletedRows);
  if (keepFrom !== null) {
    const pinned = await db.selectFrom('events').select('created_at').where('seq', '=', keepFrom).executeTakeFirst();
    if (pinned && pinned.created_at < cutoffMs) {
      const waiting = await db.selectFrom('deliveries').innerJoin('webhook_endpoints as e', 'e.id', 'deliveries.endpoint_id')
        .select(['e.id', 'e.enabled']).where('deliveries.event_seq', '=', keepFrom).where(deliveryActive('deliveries')).execute();
      ctx.log.warn({ since: new Date(pinned.created_at).toISOString(), endpoints: waiting.map((w) => ({ id: w.id, enabled: w.enabled === 1 })) },
        'retention: events are kept from the oldest one still owed to a webhook endpoint; re-enable or delete the endpoint to let them go');
    }
  }
  return out;
}

/** Deletes what `take` finds, a batch at a time, until it finds less than a batch; returns how many rows went. */
async function inBatches<K>(batch: number, stopping: () => boolean, take: () => Promise<K[]>, remove: (keys: K[]) => Promise<bigint>): Promise<number> {
  let deleted = 0;
  while (!stopping()) {
    const keys = await take();
    if (keys.length) deleted += Number(await remove(keys));
    if (keys.length < batch) break;
    await pause();
  }
  return deleted;
}

/** The background loop: a pass an hour (one process of a cluster at a time); nothing when retention is off. */
export function startRetention(ctx: AppContext, opts: { firstPassMs?: number } = {}): Worker {
  const days = ctx.config.retentionDays;
  if (days === 0) return { stop: async () => undefined };
  const owner = `retention:${process.pid}:${randomBytes(4).toString('hex')}`;
  let stopped = false;
  let running: Promise<void> | null = null;
  let timer: NodeJS.Timeout | null = null;

  const schedule = (ms: number) => {
    if (stopped) return;
    timer = setTimeout(() => { timer = null; running = pass().finally(() => { running = null; schedule(PASS_EVERY_MS); }); }, ms);
    timer.unref();
  };

  async function pass(): Promise<void> {
    try {
      const postgres = ctx.database.dialect === 'postgres';
      if (postgres && !(await tryAcquireLease(ctx.database, 'retention', owner, LEASE_MS, ctx.clock()))) return;
      const cutoff = ctx.clock() - days * DAY_MS;
      const started = Date.now();
      const pruned = await pruneOnce(ctx, cutoff, { stopping: () => stopped });
      if (postgres) await releaseLease(ctx.database, 'retention', owner);
      if (Object.values(pruned).some((n) => n > 0)) {
        ctx.log.info({ ...pruned, older_than: new Date(cutoff).toISOString(), ms: Date.now() - started }, 'retention: deleted what is older than the retention');
      }
    } catch (err) {
      ctx.log.error({ err }, 'retention pass failed; the next one is in an hour');
    }
  }

  schedule(opts.firstPassMs ?? FIRST_PASS_MS);
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
