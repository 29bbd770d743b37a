import { sql } from 'kysely';
import type { Database, Executor } from './database.js';

/**
 * Postgres: the processor claims pending webhooks in arrival order, walking the partial index of
 * pending ones (inbound_events_due) and stopping after `limit` rows. But statistics are mostly taken
 * while nothing waits (autovacuum analyzes a table once enough of it changed: after a burst, once it
 * was processed), so they say a burst's rows do not exist; estimating one row, the planner may as
 * well read every waiting row through the other partial index that holds them (a business's waiting
 * webhooks, inbound_events_waiting) and sort them. It did, after a burst of 140,000 webhooks: 60–110
 * ms a batch of 500 with 114,000 waiting, and the backlog went 1.7 times slower. With sorting off
 * for the claim's transaction, every plan but the walk in index order costs more than any walk.
 * Every run of the claim's statement must come through here: a cached plan keeps the settings it
 * was made under. (The delivery worker's claim, checked the same way, walks deliveries_due.)
 */
const NO_SORT = sql`set local enable_sort = off`;

/** Runs `claim` on Postgres in a transaction where plans read in index order (see above); on SQLite, as it is. */
export async function inIndexOrder<T>(database: Database, claim: (db: Executor) => Promise<T>): Promise<T> {
  if (database.dialect !== 'postgres') return claim(database.db);
  return database.db.transaction().execute(async (tx) => {
    await NO_SORT.execute(tx);
    return claim(tx);
  });
}
