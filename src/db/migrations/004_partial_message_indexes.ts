import { sql, type Kysely } from 'kysely';
import type { Dialect } from '../database.js';

/**
 * Three indexes of `messages` held every message, though their lookups only ever want a few:
 * - messages_queue (status, next_attempt_at): every message, inbound or outbound, sent or read,
 *   for one query, the sender's look for due replies (`status = 'queued'`). Every status change
 *   (queued → sending → sent → read) moved the row's entry. Now messages_due holds queued replies
 *   only, and the other status lookups go through messages_outbound_pending (queue.ts isPending).
 * - messages_idempotency and messages_provider_id: unique on keys that most rows lack (a reply
 *   without an Idempotency-Key; a reply not yet sent has no TikTok id). NULLs never conflict, so
 *   leaving them out changes no uniqueness, and every lookup compares the key, which implies it is
 *   not null (both planners prove that, also for bound parameters).
 *
 * Measured on SQLite (a reply's accept, claim, result and read receipt, plus one customer message,
 * each its own commit): 28.7 WAL pages written per reply before, 19.0 after; in batches of 20,
 * 9.1 and 7.2.
 */
export async function up(db: Kysely<unknown>, _dialect: Dialect): Promise<void> {
  await sql`drop index messages_queue`.execute(db);
  await sql`create index messages_due on messages (next_attempt_at, account_id) where status = 'queued'`.execute(db);
  await sql`drop index messages_idempotency`.execute(db);
  await sql`create unique index messages_idempotency on messages (idempotency_key) where idempotency_key is not null`.execute(db);
  await sql`drop index messages_provider_id`.execute(db);
  await sql`create unique index messages_provider_id on messages (account_id, provider_message_id) where provider_message_id is not null`.execute(db);
}
