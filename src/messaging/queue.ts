import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { idFloor } from '../core/ids.js';
import { isPostgres, type Executor, type Tx } from '../db/database.js';
import { literalCondition } from '../db/literal-condition.js';
import { prepared } from '../db/prepared.js';
import type { ContactSummary, EventInput } from '../events/types.js';
import type { ConversationRow } from './views.js';

/**
 * Shared pieces of the outbound queue: which statuses are "pending" (counted against the window,
 * blocking their conversation's later replies), time-bounded id ranges, and the message events.
 */

/** Keep literally in sync with migration 003's partial index (SQLite matches the text). */
export const PENDING_STATUSES = ['queued', 'sending', 'held'] as const;
export type PendingStatus = (typeof PENDING_STATUSES)[number];

/** The conditions of the messages' partial indexes (migrations 003 and 004), as literals (db/literal-condition.ts). */
export const isPending = (alias = '') => literalCondition(alias, 'status', `in ('queued', 'sending', 'held')`);
export const isQueued = (alias = '') => literalCondition(alias, 'status', `= 'queued'`);
export const isOutbound = (alias = '') => literalCondition(alias, 'direction', `= 'outbound'`);

export const DAY_MS = 86_400_000;
export const utcDayStart = (ms: number) => ms - (((ms % DAY_MS) + DAY_MS) % DAY_MS);


/** Stable JSON (sorted keys) hashed: two bodies that mean the same thing hash the same. */
export function requestHash(value: unknown): string {
  const canon = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(canon);
    if (v && typeof v === 'object') {
      return Object.fromEntries(Object.keys(v as object).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined)
        .map((k) => [k, canon((v as Record<string, unknown>)[k])]));
    }
    return v;
  };
  return createHash('sha256').update(JSON.stringify(canon(value))).digest('hex');
}

/**
 * Replies that use the current window's quota when the customer writes again: the ones still
 * pending (they will be sent in the new window), and any sent after the customer's message
 * (a backdated message, or a send that raced with it). Used by ingest to reset the counter.
 */
export async function quotaCarriedOver(db: Executor, accountId: string, conversationId: string, customerMessageMs: number): Promise<number> {
  // On Postgres, serialize with concurrent accepts (which lock the row to take quota): what they
  // committed is counted below, and what they commit later is added to the reset value.
  if (isPostgres(db)) {
    await db.selectFrom('conversations').select('id').where('id', '=', conversationId).forUpdate().execute();
  }
  const pending = await db.selectFrom('messages').select((eb) => eb.fn.countAll<number>().as('n'))
    .where('account_id', '=', accountId).where('conversation_id', '=', conversationId)
    .where(isPending()).where('counted_in_window', '=', 1)
    .executeTakeFirstOrThrow();
  const later = await repliesSentAfter.first(db, { accountId, conversationId, floor: idFloor('msg', customerMessageMs - DAY_MS), after: customerMessageMs });
  return Number(pending.n) + Number(later?.n ?? 0);
}

/** Through messages_conversation; on Postgres the account is named too (see replyInConversationToday). */
export const repliesSentAfter = prepared<{ accountId: string; conversationId: string; floor: string; after: number }>()((db, $) => {
  const q = db.selectFrom('messages').select((eb) => eb.fn.countAll<number>().as('n'))
    .where('conversation_id', '=', $('conversationId')).where('id', '>=', $('floor'))
    .where('direction', '=', 'outbound').where('status', 'in', ['sent', 'read']).where('counted_in_window', '=', 1)
    .where('provider_timestamp', '>', $('after'));
  return isPostgres(db) ? q.where('account_id', '=', $('accountId')) : q;
});

/**
 * For `tiktok_48h_10_then_unlimited`: the conversations (of those given) where the business's reply
 * reached TikTok before the customer's latest message, so that the window's quota no longer applies.
 */
export async function repliedBeforeLastInbound(db: Executor, convs: { id: string; last_inbound_at: number | null }[]): Promise<Set<string>> {
  const open = convs.filter((c) => c.last_inbound_at !== null);
  if (!open.length) return new Set();
  const rows = await db.selectFrom('messages as m').innerJoin('conversations as c', 'c.id', 'm.conversation_id')
    .select('m.conversation_id').distinct()
    .where('m.conversation_id', 'in', open.map((c) => c.id)).where(isOutbound('m')).where('m.status', 'in', ['sent', 'read'])
    .whereRef('m.provider_timestamp', '<', 'c.last_inbound_at')
    .execute();
  return new Set(rows.map((r) => r.conversation_id));
}

/**
 * The daily cap (migration 006): a conversation takes one of its account's slots on a UTC day when it
 * has a reply that day that is not failed (queued ones included). Triggers keep each conversation's
 * count of those replies for its latest day.
 */
export const repliedOn = (day: unknown, alias = 'conversations') =>
  sql<boolean>`${sql.ref(`${alias}.replied_day`)} = ${day} and ${sql.ref(`${alias}.replies_that_day`)} > 0`;

/** Whether this conversation (its row as read) already has a reply on `now`'s UTC day: it then costs no daily-cap slot. */
export function repliedToday(conv: { replied_day: number | null; replies_that_day: number }, now: number): boolean {
  return conv.replied_day === utcDayStart(now) && conv.replies_that_day > 0;
}

/** The account's conversations replied to on `day`: through conversations_replied_day, bounded by the cap. */
export const conversationsOfAccountOn = prepared<{ day: number; accountId: string }>()((db, $) =>
  db.selectFrom('conversations').select(sql<number>`count(*)`.as('n')).where('account_id', '=', $('accountId')).where(repliedOn($('day'))));

/** Distinct conversations the account replied to (or has replies queued for) today, UTC. */
export async function conversationsRepliedToday(db: Executor, accountId: string, now: number): Promise<number> {
  const row = await conversationsOfAccountOn.first(db, { day: utcDayStart(now), accountId });
  return Number(row?.n ?? 0);
}

export interface StatusEventInput {
  accountId: string;
  provider: string;
  conversationId: string;
  contact: ContactSummary;
  messageId: string;
  providerMessageId: string | null;
  status: string;
  error?: Record<string, unknown> | null;
  extra?: Record<string, unknown>;
}

export function statusEvent(e: StatusEventInput): EventInput {
  return {
    event: 'message.status', account_id: e.accountId, provider: e.provider, conversation_id: e.conversationId,
    data: {
      message_id: e.messageId, provider_message_id: e.providerMessageId, conversation_id: e.conversationId, contact: e.contact,
      status: e.status, error: e.error ?? null, ...(e.extra ?? {}),
    },
  };
}

export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e?.code === '23505' || e?.code === 'SQLITE_CONSTRAINT_UNIQUE' || e?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || /UNIQUE constraint failed/.test(e?.message ?? '');
}

export const preview = (text: string | null, type: string) => (text ?? `[${type}]`).slice(0, 200);

const conversationLocked = prepared<{ id: string }>()((db, $) => {
  const q = db.selectFrom('conversations').selectAll().where('id', '=', $('id'));
  return isPostgres(db) ? q.forUpdate() : q;
});

/** The conversation, locked on Postgres until the transaction ends (SQLite has one writer). */
export async function lockConversation(tx: Tx, id: string): Promise<ConversationRow> {
  const conv = await conversationLocked.first(tx, { id });
  if (!conv) throw new Error(`conversation ${id} is gone`);
  return conv;
}
