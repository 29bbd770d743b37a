import type { AppContext } from '../context.js';
import { type Executor, type Tx } from '../db/database.js';
import { prepared } from '../db/prepared.js';
import type { ContactSummary } from '../events/types.js';
import { isOutbound, isPending, isQueued } from './queue.js';
import type { MessageRow } from './views.js';

/**
 * The sender's reads of its durable queue (the pending `messages` rows) and what it finds there:
 * the replies with what sending them needs, and the echo TikTok sent for one.
 */

/**
 * Pending replies of one account read at once (oldest first): 20 s of sending at TikTok's 10 QPS.
 * When there are more, the list is read again as it runs low (memory stays bounded per account).
 */
export const FETCH_LIMIT = 200;

export interface Candidate {
  id: string;
  conversation_id: string;
  account_id: string;
  type: string;
  text: string | null;
  media: string | null;
  extra: string | null;
  reply_to: string | null;
  attempts: number;
  source: MessageRow['source'];
  sent_by: string | null;
  counted_in_window: number;
  created_at: number;
  idempotency_key: string | null;
  conv_external_id: string;
  last_inbound_at: number | null;
  last_outbound_at: number | null;
  contact_id: string;
  contact_external_id: string;
  contact_username: string | null;
  contact_display_name: string | null;
  contact_is_follower: number;
}

/** A pending reply with its queue state. */
export type Row = Candidate & { status: string; next_attempt_at: number | null; error: string | null };

export const contactOf = (c: Candidate): ContactSummary => ({
  id: c.contact_id, username: c.contact_username, display_name: c.contact_display_name, is_follower: Boolean(c.contact_is_follower),
});

/** How far TikTok's clock may run behind ours when matching an echo to the send that caused it. */
export const ECHO_CLOCK_SKEW_MS = 5_000;

/** A send TikTok has: its message id and when it took it. */
export interface TikTokSend { providerMessageId: string; timestampMs: number }

/** Accounts with replies due by `now` (retries, restarts), through the partial index of queued replies. */
export const dueAccounts = (db: Executor, now: number) => db.selectFrom('messages').select('account_id')
  .where(isQueued()).where('next_attempt_at', '<=', now).groupBy('account_id');

/** Replies left `sending` since before `before`, through the partial index of pending replies. */
export const staleSending = (db: Executor, before: number) => db.selectFrom('messages').select('id')
  .where(isPending()).where('status', '=', 'sending').where('updated_at', '<', before);

/**
 * The echo TikTok sent for this reply, recorded as a message of its own: an API send in the same
 * conversation, never claimed by our sender (attempts 0), with the same content, sent after the
 * reply was claimed. The reply heads its conversation, so no later reply of ours was sent since.
 */
export async function echoOf(tx: Executor, c: Candidate, claimedAt: number): Promise<TikTokSend | undefined> {
  const echo = await tx.selectFrom('messages').select(['provider_message_id', 'provider_timestamp'])
    .where('conversation_id', '=', c.conversation_id).where('direction', '=', 'outbound').where('id', '!=', c.id)
    .where('source', '=', 'api').where('attempts', '=', 0).where('status', 'in', ['sent', 'read'])
    .where('provider_message_id', 'is not', null).where('provider_timestamp', '>=', claimedAt - ECHO_CLOCK_SKEW_MS)
    .where('type', '=', c.type).where('text', c.text === null ? 'is' : '=', c.text)
    .orderBy('provider_timestamp').limit(1).executeTakeFirst();
  return echo && { providerMessageId: echo.provider_message_id!, timestampMs: echo.provider_timestamp! };
}


/** Pending replies with what sending them needs (conversation and contact). */
export function candidates(db: Tx | AppContext['database']['db']) {
  return db.selectFrom('messages as m')
    .innerJoin('conversations as c', 'c.id', 'm.conversation_id')
    .innerJoin('contacts as ct', 'ct.id', 'c.contact_id')
    .select([
      'm.id', 'm.conversation_id', 'm.account_id', 'm.type', 'm.text', 'm.media', 'm.extra', 'm.reply_to', 'm.attempts', 'm.source', 'm.sent_by',
      'm.counted_in_window', 'm.created_at', 'm.idempotency_key',
      'c.external_id as conv_external_id', 'c.last_inbound_at', 'c.last_outbound_at', 'c.contact_id',
      'ct.external_id as contact_external_id', 'ct.username as contact_username', 'ct.display_name as contact_display_name', 'ct.is_follower as contact_is_follower',
    ]);
}

/** The account's pending replies, with their queue state. */
const pendingOfAccount = (db: Tx | AppContext['database']['db'], accountId: string) => candidates(db).select(['m.status', 'm.next_attempt_at', 'm.error'])
  .where('m.account_id', '=', accountId).where(isPending('m'));

/**
 * All of them, oldest first, through the partial index on pending rows. (Until messages_provider_id
 * became partial, SQLite's planner preferred it, every message the account ever had, unless the
 * query added an always-true `conversation_id > ''`.)
 */
export const pendingOf = prepared<{ accountId: string }>()((db, $) => pendingOfAccount(db, $('accountId'))
  .orderBy('m.id').limit(FETCH_LIMIT));

/** Those accepted after `floor` (through messages_outbound_account: the account's id range). */
export const pendingSince = prepared<{ accountId: string; floor: string }>()((db, $) => pendingOfAccount(db, $('accountId'))
  .where(isOutbound('m')).where('m.id', '>', $('floor')).orderBy('m.id').limit(FETCH_LIMIT));
