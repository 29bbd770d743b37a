import { sql, type Kysely } from 'kysely';
import type { Dialect } from '../database.js';

/**
 * Indexes for the outbound queue (src/messaging/pending-replies.ts, accept.ts). Partial, so they stay as
 * small as the work they describe:
 * - pending replies per account and conversation: the sender's "head of each conversation" claim,
 *   the quota carried into a new window, held/queued sweeps;
 * - outbound messages per account in id (= time) order: the daily cap of conversations replied;
 * - templates per conversation: linking a customer's answer to the options it offered.
 * The status list must stay literally the same as PENDING_STATUSES in src/messaging/queue.ts so
 * SQLite's planner sees the query's WHERE imply the index's.
 */
export async function up(db: Kysely<unknown>, _dialect: Dialect): Promise<void> {
  await sql`create index messages_outbound_pending on messages (account_id, conversation_id, id)
    where status in ('queued', 'sending', 'held')`.execute(db);
  await sql`create index messages_outbound_account on messages (account_id, id) where direction = 'outbound'`.execute(db);
  await sql`create index messages_outbound_templates on messages (conversation_id, id) where direction = 'outbound' and type = 'template'`.execute(db);
}
