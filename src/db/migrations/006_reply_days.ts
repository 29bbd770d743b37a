import { sql, type Kysely } from 'kysely';
import type { Dialect } from '../database.js';
import { changeIndexes } from '../index-changes.js';
import { idFloor } from '../../core/ids.js';

const DAY_MS = 86_400_000;

/**
 * The daily cap's state on the conversation: `replied_day`, the UTC day (its first millisecond) of
 * the conversation's latest replies, and `replies_that_day`, how many of that day's outbound
 * messages are not failed. "Replied today" is then a column of the row an accept reads anyway, and
 * an account's conversations of the day a count of its conversations (bounded by the cap) through
 * conversations_replied_day, instead of counting the account's replies of the day, which grew with
 * the day's traffic and, on PostgreSQL, was counted under the account's lock. In bench:outbound's
 * full run (100 replies per account before the latency probes), PostgreSQL CPU per POST of the
 * API-only process and its POST p99 (three runs each): 0.84–1.08 ms and 36–63 ms counting replies;
 * 0.66–0.96 ms and 23–41 ms with this state; 0.57–0.70 ms and 17.5–36.5 ms with no cap at all.
 *
 * Triggers on messages keep both columns, whatever writes a message: a reply inserted (the accept,
 * the ingest's echo of a reply sent from TikTok's app), failed (the sender, a held reply whose window
 * closed) or un-failed, an echo deleted when its reply adopts it. A message's day is that of its
 * `created_at` (the time its id was made from). Each trigger updates only the message's conversation:
 * the accept and the ingest lock it before they write the message, the sender's failures for the
 * quota they give back; only a failure that gives none back (a reply that took no quota, held
 * replies whose window closed) locks it here first.
 *
 * The conversations replied to today before this migration are counted here, from today's messages
 * only (through the primary key). Adding the columns and the triggers locks both tables against
 * writes for the migration's length, after their open writers end.
 */
export async function up(db: Kysely<unknown>, dialect: Dialect): Promise<void> {
  await sql`alter table conversations add column replied_day bigint`.execute(db);
  await sql`alter table conversations add column replies_that_day integer not null default 0`.execute(db);
  if (dialect === 'postgres') await postgresTriggers(db);
  else await sqliteTriggers(db);
  // Today's messages through the primary key: ids begin with their time.
  const now = Date.now();
  const today = now - (now % DAY_MS);
  const floor = idFloor('msg', today);
  await sql`update conversations set replied_day = ${today}, replies_that_day = (
      select count(*) from messages m where m.conversation_id = conversations.id and m.id >= ${floor} and m.direction = 'outbound' and m.status <> 'failed')
    where id in (select conversation_id from messages where id >= ${floor} and direction = 'outbound' and status <> 'failed')`.execute(db);
  await changeIndexes(db, dialect, '006_reply_days', [{ name: 'conversations_replied_day', definition: 'on conversations (account_id, replied_day)' }]);
}

/** `ref`'s UTC day, in SQL (`ref` is `new` or `old`). */
const dayOf = (ref: string) => `(${ref}.created_at - ${ref}.created_at % ${DAY_MS})`;

/** One more reply on `ref`'s day; a later day starts again from one. (SET reads the row as it was.) */
const countUp = (ref: string) => `update conversations set
    replies_that_day = case when replied_day = ${dayOf(ref)} then replies_that_day + 1 else 1 end, replied_day = ${dayOf(ref)}
    where id = ${ref}.conversation_id and (replied_day is null or replied_day <= ${dayOf(ref)})`;

/** One reply fewer on `ref`'s day, if that day is still the one counted. */
const countDown = (ref: string) => `update conversations set replies_that_day = replies_that_day - 1
    where id = ${ref}.conversation_id and replied_day = ${dayOf(ref)} and replies_that_day > 0`;

/** Each trigger: its event, its condition, and whether it counts its message up (`new`) or down (`old`). */
const TRIGGERS: [name: string, event: string, when: string, up: boolean][] = [
  ['messages_reply_day_inserted', 'insert', `new.direction = 'outbound' and new.status <> 'failed'`, true],
  ['messages_reply_day_unfailed', 'update of status', `new.direction = 'outbound' and old.status = 'failed' and new.status <> 'failed'`, true],
  ['messages_reply_day_failed', 'update of status', `old.direction = 'outbound' and old.status <> 'failed' and new.status = 'failed'`, false],
  ['messages_reply_day_deleted', 'delete', `old.direction = 'outbound' and old.status <> 'failed'`, false],
];

async function sqliteTriggers(db: Kysely<unknown>): Promise<void> {
  for (const [name, event, when, up] of TRIGGERS) {
    await sql.raw(`create trigger ${name} after ${event} on messages for each row when ${when} begin ${up ? countUp('new') : countDown('old')}; end`).execute(db);
  }
}

/** PostgreSQL runs a trigger's statements as a function: one counting up, one down. */
async function postgresTriggers(db: Kysely<unknown>): Promise<void> {
  const fn = (up: boolean) => (up ? 'dmgate_reply_day_up' : 'dmgate_reply_day_down');
  for (const up of [true, false]) {
    await sql.raw(`create function ${fn(up)}() returns trigger language plpgsql as $$ begin ${up ? countUp('new') : countDown('old')}; return null; end $$`).execute(db);
  }
  for (const [name, event, when, up] of TRIGGERS) {
    await sql.raw(`create trigger ${name} after ${event} on messages for each row when (${when}) execute function ${fn(up)}()`).execute(db);
  }
}
