import type { Kysely } from 'kysely';
import type { Dialect } from '../database.js';
import { changeIndexes } from '../index-changes.js';

/**
 * The status indexes of the two other queues, the inbound log and the webhook deliveries, held
 * every row they ever had, though their lookups only want the rows still waiting: a processed
 * webhook or a delivered event stayed in them forever, and every status change moved its entry
 * (on Postgres, where a status change is never a HOT update, it added one to every index).
 *
 * - inbound_events_due (seq, next_attempt_at) where pending: the processor's scan in arrival order.
 * - inbound_events_waiting (provider, business_id) where pending or held: whether a business's
 *   webhooks wait, and the release of those held while its account was disconnected.
 * - deliveries_due (next_attempt_at, event_seq) where pending: the worker's claim, in its order.
 * - deliveries_failed (endpoint_id, created_at) where failed: dead letters, counted by the metrics
 *   and re-queued per endpoint and time range. The lease sweep and the ordered-endpoint check use
 *   migration 002's deliveries_active_order (pending or delivering).
 *
 * Every lookup states these conditions with the same literals (see inbound-log.ts and
 * delivery-status.ts): SQLite uses a partial index only when the query repeats its condition.
 *
 * Measured over 50,000 finished webhooks with their deliveries (a webhook's insert, its processing
 * with its delivery's insert, the delivery's result; each step one commit per batch of B): SQLite
 * WAL pages per webhook 20.2 → 16.6 (B = 1), 6.5 → 3.8 (B = 5), 3.9 → 1.3 (B = 20); Postgres WAL
 * bytes per webhook 3.04 → 2.56 KiB (B = 1), 2.96 → 2.48 KiB (B = 20).
 *
 * On a large PostgreSQL table the indexes are built after the migration, without blocking writes
 * (index-changes.ts).
 */
export async function up(db: Kysely<unknown>, dialect: Dialect): Promise<void> {
  await changeIndexes(db, dialect, '005_partial_queue_indexes', [
    { name: 'inbound_events_due', definition: "on inbound_events (seq, next_attempt_at) where status = 'pending'", replaces: 'inbound_events_status' },
    {
      name: 'inbound_events_waiting',
      definition: "on inbound_events (provider, business_id) where status in ('pending', 'held')", replaces: 'inbound_events_business',
    },
    { name: 'deliveries_due', definition: "on deliveries (next_attempt_at, event_seq) where status = 'pending'", replaces: 'deliveries_due' },
    { name: 'deliveries_failed', definition: "on deliveries (endpoint_id, created_at) where status = 'failed'" },
  ]);
}
