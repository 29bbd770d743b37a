import type { Selectable } from 'kysely';
import type { ContactsTable, ConversationsTable, MessagesTable } from '../db/schema.js';
import { parseJson } from '../db/database.js';
import type { ContactSummary } from '../events/types.js';

export type MessageRow = Selectable<MessagesTable>;
export type ConversationRow = Selectable<ConversationsTable>;
export type ContactRow = Selectable<ContactsTable>;

export const iso = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : new Date(ms).toISOString());

/** The media object of a message as the API and events show it: fetched through the gateway. */
export function mediaView(m: MessageRow): Record<string, unknown> | null {
  const media = parseJson<Record<string, unknown> | null>(m.media, null);
  return media;
}

/** The public shape of a message (DESIGN §5). */
export function messageView(m: MessageRow) {
  const extra = parseJson<Record<string, unknown>>(m.extra, {});
  return {
    id: m.id,
    conversation_id: m.conversation_id,
    account_id: m.account_id,
    direction: m.direction,
    type: m.type,
    text: m.text,
    media: mediaView(m),
    share_post: extra.share_post ?? null,
    template: extra.template ?? null,
    unsupported: extra.unsupported ?? null,
    referral: extra.referral ?? null,
    reply_to: m.reply_to,
    status: m.status,
    source: m.source,
    error: parseJson<Record<string, unknown> | null>(m.error, null),
    provider_message_id: m.provider_message_id,
    sent_by: m.sent_by,
    created_at: iso(m.provider_timestamp ?? m.created_at),
    updated_at: iso(m.updated_at),
  };
}

export function contactSummary(c: ContactRow): ContactSummary {
  return { id: c.id, username: c.username, display_name: c.display_name, is_follower: Boolean(c.is_follower) };
}

export function contactView(c: ContactRow) {
  return {
    ...contactSummary(c),
    provider: c.provider,
    external_id: c.external_id,
    avatar_url: c.avatar_url,
    first_referral: parseJson(c.first_referral, null),
    attributes: parseJson<Record<string, unknown>>(c.attributes, {}),
    notes: c.notes,
    created_at: iso(c.created_at),
  };
}

/** Every column of a message, named once so that inserts compile once. */
export const MESSAGE_COLUMNS = Object.keys({
  id: 1, conversation_id: 1, account_id: 1, direction: 1, provider_message_id: 1, type: 1, text: 1, media: 1, extra: 1, source: 1,
  status: 1, error: 1, idempotency_key: 1, request_hash: 1, reply_to: 1, sent_by: 1, attempts: 1, next_attempt_at: 1,
  counted_in_window: 1, provider_timestamp: 1, created_at: 1, updated_at: 1,
} satisfies Record<keyof MessageRow, 1>) as (keyof MessageRow)[];
