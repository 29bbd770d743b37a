import { sql, type Kysely } from 'kysely';
import type { Dialect } from '../database.js';

/**
 * Indexes for the delivery worker and the events API:
 * - the ordered-endpoint check ("is an older delivery of this conversation still undelivered?")
 *   looks only at active rows, so a partial index keeps it independent of delivery history;
 * - `GET /v1/events?conversation_id=` / `?account_id=` walk seq order within one key.
 */
export async function up(db: Kysely<unknown>, _dialect: Dialect): Promise<void> {
  await sql`create index deliveries_active_order on deliveries (endpoint_id, conversation_id, event_seq)
    where status in ('pending', 'delivering')`.execute(db);
  await sql`create index events_conversation_seq on events (conversation_id, seq)`.execute(db);
  await sql`create index events_account_seq on events (account_id, seq)`.execute(db);
}
