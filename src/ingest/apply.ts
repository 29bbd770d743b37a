import { sql } from 'kysely';
import { chunks } from '../core/chunks.js';
import { newId } from '../core/ids.js';
import type { Tx } from '../db/database.js';
import { isPostgres, parseJson } from '../db/database.js';
import { prepared } from '../db/prepared.js';
import type { EventInput, Referral } from '../events/types.js';
import type { ProviderEvent, ProviderMessage, ProviderUser } from '../providers/types.js';
import type { AccountRow } from '../accounts/store.js';
import { contactSummary, messageView, type ContactRow, type ConversationRow, type MessageRow } from '../messaging/views.js';
import { quotaCarriedOver } from '../messaging/queue.js';
import { templateAnswer } from '../messaging/template-answer.js';

/** What applying one provider event did: the events to append, or a request to try again later. */
export type ApplyOutcome = { events: EventInput[] } | { defer: string };

interface ApplyContext {
  tx: Tx; account: AccountRow; now: number; historical: boolean; rows: BatchRows | null;
  /** The event came in a webhook with its content (not from TikTok's lists, as EEA reads and backfill). */
  byWebhook: boolean;
}

/**
 * Contacts and conversations of a batch, read once for the whole batch (a miss of a preloaded key
 * means "not in the table"), and kept current as the batch changes them. On Postgres the
 * conversation rows are locked for the transaction, so the sender, which locks a conversation to
 * reserve quota, and the processor never overwrite each other's counters.
 */
export class BatchRows {
  readonly contacts = new Map<string, ContactRow | null>();
  readonly conversations = new Map<string, ConversationRow | null>();
}

export interface BatchKeys { provider: string; accountId: string; conversationIds: Set<string>; customerIds: Set<string> }

export async function preloadBatch(tx: Tx, lock: boolean, keys: BatchKeys[]): Promise<BatchRows> {
  const rows = new BatchRows();
  for (const k of keys) {
    for (const chunk of chunks([...k.conversationIds])) {
      const found = new Map((await conversationsByExternalId(tx, k.accountId, chunk, lock)).map((c) => [c.external_id, c]));
      for (const id of chunk) rows.conversations.set(`${k.accountId}|${id}`, found.get(id) ?? null);
    }
    for (const chunk of chunks([...k.customerIds])) {
      const found = new Map((await contactsByExternalId(tx, k.provider, chunk)).map((c) => [c.external_id, c]));
      for (const id of chunk) rows.contacts.set(`${k.provider}|${id}`, found.get(id) ?? null);
    }
  }
  return rows;
}

/*
 * On Postgres, `scope = $1 and key in (...)` is planned from statistics a new store does not
 * have yet: with none, the scope looks selective and the plan reads every contact of the provider
 * (every conversation or message of the account) by the scope alone, filtering the list (3-12 ms a
 * batch with 20,000 contacts). One lateral lookup per key, kept from being flattened into a join by
 * its limit or its lock, can only be an index probe on both columns, whatever the statistics
 * (test/stale-statistics-plans.test.ts). SQLite probes the unique index per key anyway.
 */
async function contactsByExternalId(tx: Tx, provider: string, externalIds: string[]): Promise<ContactRow[]> {
  if (!isPostgres(tx)) return tx.selectFrom('contacts').selectAll().where('provider', '=', provider).where('external_id', 'in', externalIds).execute();
  return (await postgresLookups.contacts(provider, externalIds).execute(tx)).rows;
}

async function conversationsByExternalId(tx: Tx, accountId: string, externalIds: string[], lock: boolean): Promise<ConversationRow[]> {
  if (!isPostgres(tx)) return tx.selectFrom('conversations').selectAll().where('account_id', '=', accountId).where('external_id', 'in', externalIds).execute();
  return (await postgresLookups.conversations(accountId, externalIds, lock).execute(tx)).rows;
}

export const postgresLookups = {
  contacts: (provider: string, externalIds: string[]) => sql<ContactRow>`select c.* from unnest(${externalIds}::text[]) as k(id)
    cross join lateral (select * from contacts where provider = ${provider} and external_id = k.id limit 1) as c`,
  /**
   * With `lock`, the rows are locked in id order, the order of every other multi-row lock of
   * conversations (row-sets.ts conversationsLockedInOrder): found first, then locked through the
   * primary key, which returns them in that order.
   */
  conversations: (accountId: string, externalIds: string[], lock: boolean) => {
    const found = sql<ConversationRow>`select c.* from unnest(${externalIds}::text[]) as k(id)
      cross join lateral (select * from conversations where account_id = ${accountId} and external_id = k.id limit 1) as c`;
    return lock ? sql<ConversationRow>`select * from conversations where id = any(array(select f.id from (${found}) as f)) order by id for update` : found;
  },
  /** How many of these TikTok message ids the account already has (the history backfill's dedup count). */
  messagesStored: (accountId: string, providerIds: string[]) => sql<{ n: number }>`select count(*)::int as n from unnest(${providerIds}::text[]) as k(id)
    cross join lateral (select 1 from messages where account_id = ${accountId} and provider_message_id = k.id limit 1) as m`,
};

async function findContact(a: ApplyContext, provider: string, externalId: string): Promise<ContactRow | undefined> {
  const key = `${provider}|${externalId}`;
  if (a.rows?.contacts.has(key)) return a.rows.contacts.get(key) ?? undefined;
  return a.tx.selectFrom('contacts').selectAll().where('provider', '=', provider).where('external_id', '=', externalId).executeTakeFirst();
}

async function findConversation(a: ApplyContext, externalId: string): Promise<ConversationRow | undefined> {
  const key = `${a.account.id}|${externalId}`;
  if (a.rows?.conversations.has(key)) return a.rows.conversations.get(key) ?? undefined;
  return a.tx.selectFrom('conversations').selectAll().where('account_id', '=', a.account.id).where('external_id', '=', externalId).executeTakeFirst();
}

/** Updates a conversation (counters as atomic increments, safe even without the batch lock). */
async function updateConversation(a: ApplyContext, conv: ConversationRow, patch: Partial<ConversationRow>, opts: { countOutbound?: boolean } = {}): Promise<ConversationRow> {
  const inc = opts.countOutbound ? { outbound_since_inbound: sql<number>`outbound_since_inbound + 1` } : {};
  await a.tx.updateTable('conversations').set({ ...patch, ...inc, updated_at: a.now }).where('id', '=', conv.id).execute();
  const next = { ...conv, ...patch, updated_at: a.now, outbound_since_inbound: conv.outbound_since_inbound + (opts.countOutbound ? 1 : 0) };
  a.rows?.conversations.set(`${conv.account_id}|${conv.external_id}`, next);
  return next;
}

const rememberContact = (a: ApplyContext, c: ContactRow) => { a.rows?.contacts.set(`${c.provider}|${c.external_id}`, c); return c; };

const preview = (m: ProviderMessage) => (m.text ?? `[${m.type}]`).slice(0, 200);

async function upsertContact(a: ApplyContext, provider: string, user: ProviderUser, events: EventInput[]): Promise<ContactRow> {
  const { tx, now } = a;
  const existing = await findContact(a, provider, user.externalId);
  if (existing) {
    const patch: Partial<ContactRow> = {};
    if (user.username && user.username !== existing.username) patch.username = user.username;
    if (user.displayName && user.displayName !== existing.display_name) patch.display_name = user.displayName;
    if (user.avatarUrl && user.avatarUrl !== existing.avatar_url) patch.avatar_url = user.avatarUrl;
    if (user.isFollower !== null && Number(user.isFollower) !== existing.is_follower) patch.is_follower = Number(user.isFollower);
    if (Object.keys(patch).length) {
      await tx.updateTable('contacts').set({ ...patch, updated_at: now }).where('id', '=', existing.id).execute();
      return rememberContact(a, { ...existing, ...patch });
    }
    return existing;
  }
  const row: ContactRow = {
    id: newId('ct', now), provider, external_id: user.externalId, username: user.username, display_name: user.displayName,
    avatar_url: user.avatarUrl, is_follower: Number(Boolean(user.isFollower)), first_referral: null, attributes: '{}', notes: null,
    created_at: now, updated_at: now,
  };
  // Another transaction (a concurrent conversation of the same customer) may insert it first.
  const inserted = await tx.insertInto('contacts').values(row).onConflict((oc) => oc.columns(['provider', 'external_id']).doNothing()).returning('id').executeTakeFirst();
  if (!inserted) {
    return rememberContact(a, await tx.selectFrom('contacts').selectAll().where('provider', '=', provider).where('external_id', '=', user.externalId).executeTakeFirstOrThrow());
  }
  if (!a.historical) events.push({ event: 'contact.created', account_id: a.account.id, provider, data: { contact: contactSummary(row) } });
  return rememberContact(a, row);
}

async function upsertConversation(a: ApplyContext, externalId: string, contact: ContactRow, atMs: number, events: EventInput[]): Promise<ConversationRow> {
  const { tx, account, now } = a;
  const existing = await findConversation(a, externalId);
  if (existing) return existing;
  const row: ConversationRow = {
    id: newId('cv', now), account_id: account.id, contact_id: contact.id, external_id: externalId, status: 'open', assignee_id: null,
    last_inbound_at: null, last_outbound_at: null, outbound_since_inbound: 0, first_unanswered_at: null,
    last_message_at: atMs, last_message_preview: null, customer_read_at: null, referral: null,
    image_capability: null, image_capability_checked_at: null, replied_day: null, replies_that_day: 0, content_by_webhook: null, created_at: now, updated_at: now,
  };
  await tx.insertInto('conversations').values(row).execute();
  a.rows?.conversations.set(`${account.id}|${externalId}`, row);
  if (!a.historical) {
    events.push({ event: 'conversation.created', account_id: account.id, provider: account.provider, conversation_id: row.id, data: { conversation_id: row.id, contact: contactSummary(contact) } });
  }
  return row;
}

async function insertMessage(tx: Tx, row: MessageRow): Promise<boolean> {
  const res = await tx.insertInto('messages').values(row)
    // The unique index is partial (004_partial_message_indexes): the target names its condition.
    .onConflict((oc) => oc.columns(['account_id', 'provider_message_id']).where('provider_message_id', 'is not', null).doNothing()).executeTakeFirst();
  return Number(res.numInsertedOrUpdatedRows ?? 0) === 1;
}

async function mediaFor(a: ApplyContext, messageId: string, m: ProviderMessage): Promise<string | null> {
  if (!m.media) return null;
  const id = newId('med', a.now);
  await a.tx.insertInto('media').values({
    id, message_id: messageId, account_id: a.account.id, provider_media_id: m.media.providerMediaId,
    content_type: null, size: null, data: null, created_at: a.now,
  }).execute();
  return JSON.stringify({ id, kind: m.media.kind, url: `/v1/media/${id}` });
}

async function customerMessage(a: ApplyContext, ev: Extract<ProviderEvent, { kind: 'customer_message' }>): Promise<ApplyOutcome> {
  const { tx, account, now } = a;
  const events: EventInput[] = [];
  const contact = await upsertContact(a, account.provider, ev.customer, events);
  const conv = await upsertConversation(a, ev.conversationId, contact, ev.message.timestampMs, events);
  const m = ev.message;
  const id = newId('msg', now);
  // The first message after a referral carries it (DESIGN §6), once.
  const pendingReferral = parseJson<{ referral: Referral; attached_to: string | null } | null>(conv.referral, null);
  const referral = pendingReferral && !pendingReferral.attached_to ? pendingReferral.referral : null;
  // A customer picking an option of a template we sent (by number or title) is linked to it.
  const answer = m.type === 'text' ? await templateAnswer(tx, conv.id, m.text, m.timestampMs) : null;
  const msgExtra = answer ? { ...(m.extra ?? {}), template_answer: answer } : m.extra;
  const extra = { ...(msgExtra ?? {}), ...(referral ? { referral } : {}) };
  const replyTo = m.replyToProviderId
    ? (await tx.selectFrom('messages').select('id').where('account_id', '=', account.id).where('provider_message_id', '=', m.replyToProviderId).executeTakeFirst())?.id ?? null
    : null;
  const row: MessageRow = {
    id, conversation_id: conv.id, account_id: account.id, direction: 'inbound', provider_message_id: m.providerMessageId,
    type: m.type, text: m.text, media: null, extra: Object.keys(extra).length ? JSON.stringify(extra) : null,
    source: 'customer', status: 'received', error: null, idempotency_key: null, request_hash: null, reply_to: replyTo, sent_by: null,
    attempts: 0, next_attempt_at: null, counted_in_window: 0, provider_timestamp: m.timestampMs, created_at: now, updated_at: now,
  };
  row.media = await mediaFor(a, id, m);
  if (!(await insertMessage(tx, row))) {
    await tx.deleteFrom('media').where('message_id', '=', id).execute();
    return { events }; // a duplicate: TikTok retried, or backfill overlapped
  }
  // Window state: each customer message opens/extends the window and resets the quota.
  const newer = (conv.last_inbound_at ?? 0) <= m.timestampMs;
  await updateConversation(a, conv, {
    last_inbound_at: newer ? m.timestampMs : conv.last_inbound_at,
    // The quota resets, except for replies still queued (they will be sent in this new window).
    outbound_since_inbound: !newer ? conv.outbound_since_inbound : conv.outbound_since_inbound === 0 ? 0 : await quotaCarriedOver(tx, account.id, conv.id, m.timestampMs),
    first_unanswered_at: conv.first_unanswered_at ?? (a.historical && (conv.last_outbound_at ?? 0) > m.timestampMs ? null : m.timestampMs),
    last_message_at: Math.max(conv.last_message_at ?? 0, m.timestampMs),
    last_message_preview: newer ? preview(m) : conv.last_message_preview,
    status: a.historical ? conv.status : 'open',
    referral: referral ? JSON.stringify({ referral, attached_to: id }) : conv.referral,
    // Its customer is outside the EEA: its DMs come with their content, and EEA reads skip it.
    ...(a.byWebhook && conv.content_by_webhook !== 1 ? { content_by_webhook: 1 } : {}),
  });
  if (!a.historical) {
    events.push({
      event: 'message.received', account_id: account.id, provider: account.provider, conversation_id: conv.id,
      timestamp: Math.floor(m.timestampMs / 1000),
      data: {
        from: ev.customer.externalId, text: m.text, message_id: id, provider_message_id: m.providerMessageId,
        conversation_id: conv.id, type: m.type, contact: contactSummary(contact), media: parseJson(row.media, null), referral,
        ...(msgExtra ? { extra: msgExtra } : {}), reply_to: replyTo,
      },
    });
  }
  return { events };
}

export const messageByProviderId = prepared<{ accountId: string; providerMessageId: string }>()((db, $) => db.selectFrom('messages').select('id')
  .where('account_id', '=', $('accountId')).where('provider_message_id', '=', $('providerMessageId')));

async function businessMessage(a: ApplyContext, ev: Extract<ProviderEvent, { kind: 'business_message' }>, attempts: number): Promise<ApplyOutcome> {
  const { tx, account, now } = a;
  const m = ev.message;
  const known = await messageByProviderId.first(tx, { accountId: account.id, providerMessageId: m.providerMessageId });
  if (known) return { events: [] }; // our own send, already recorded by the sender
  const events: EventInput[] = [];
  const contact = await upsertContact(a, account.provider, ev.customer, events);
  const conv = await upsertConversation(a, ev.conversationId, contact, m.timestampMs, events);
  if (ev.origin === 'api' && !a.historical && attempts < 40) {
    // The echo of an API send can arrive before the send call returns its message id: wait for it
    // (up to 20 s, longer than the TikTok client's timeout; the sender adopts a later duplicate).
    const inFlight = await tx.selectFrom('messages').select('id').where('conversation_id', '=', conv.id)
      .where('direction', '=', 'outbound').where('status', 'in', ['sending', 'queued']).executeTakeFirst();
    if (inFlight) return { defer: 'echo of a send still in flight' };
  }
  const id = newId('msg', now);
  const read = (conv.customer_read_at ?? 0) >= m.timestampMs;
  const row: MessageRow = {
    id, conversation_id: conv.id, account_id: account.id, direction: 'outbound', provider_message_id: m.providerMessageId,
    type: m.type, text: m.text, media: null, extra: m.extra ? JSON.stringify(m.extra) : null,
    source: ev.origin === 'api' ? 'api' : 'tiktok_app', status: read ? 'read' : 'sent', error: null, idempotency_key: null, request_hash: null,
    reply_to: null, sent_by: null, attempts: 0, next_attempt_at: null, counted_in_window: 1, provider_timestamp: m.timestampMs, created_at: now, updated_at: now,
  };
  row.media = await mediaFor(a, id, m);
  if (!(await insertMessage(tx, row))) return { events };
  const inWindow = (conv.last_inbound_at ?? 0) <= m.timestampMs;
  await updateConversation(a, conv, {
    last_outbound_at: Math.max(conv.last_outbound_at ?? 0, m.timestampMs),
    first_unanswered_at: inWindow ? null : conv.first_unanswered_at,
    last_message_at: Math.max(conv.last_message_at ?? 0, m.timestampMs),
    last_message_preview: (conv.last_message_at ?? 0) <= m.timestampMs ? preview(m) : conv.last_message_preview,
  }, { countOutbound: inWindow });
  if (!a.historical) {
    const view = messageView(row);
    events.push({
      event: 'message.sent', account_id: account.id, provider: account.provider, conversation_id: conv.id,
      timestamp: Math.floor(m.timestampMs / 1000),
      data: {
        text: m.text, message_id: id, provider_message_id: m.providerMessageId, conversation_id: conv.id, contact: contactSummary(contact),
        source: row.source, to: ev.customer.externalId, type: m.type, media: view.media, status: row.status,
      },
    });
  }
  return { events };
}

async function referral(a: ApplyContext, ev: Extract<ProviderEvent, { kind: 'referral' }>): Promise<ApplyOutcome> {
  const { tx, account, now } = a;
  const events: EventInput[] = [];
  const contact = await upsertContact(a, account.provider, ev.customer, events);
  const conv = await upsertConversation(a, ev.conversationId, contact, ev.timestampMs, events);
  await updateConversation(a, conv, { referral: JSON.stringify({ referral: ev.referral, attached_to: null }) });
  if (!contact.first_referral) {
    await tx.updateTable('contacts').set({ first_referral: JSON.stringify({ ...ev.referral, conversation_id: conv.id, at: new Date(ev.timestampMs).toISOString() }), updated_at: now })
      .where('id', '=', contact.id).execute();
  }
  events.push({
    event: 'conversation.referral', account_id: account.id, provider: account.provider, conversation_id: conv.id,
    timestamp: Math.floor(ev.timestampMs / 1000),
    data: { from: ev.customer.externalId, conversation_id: conv.id, contact: contactSummary(contact), referral: ev.referral },
  });
  return { events };
}

async function read(a: ApplyContext, ev: Extract<ProviderEvent, { kind: 'read' }>): Promise<ApplyOutcome> {
  const { tx, account, now } = a;
  const conv = await findConversation(a, ev.conversationId);
  if (!conv) return { events: [] };
  const contact = await tx.selectFrom('contacts').selectAll().where('id', '=', conv.contact_id).executeTakeFirstOrThrow();
  // A high-water mark: every business message at or before it is read.
  const upTo = Math.max(conv.customer_read_at ?? 0, ev.readUpToMs);
  await updateConversation(a, conv, { customer_read_at: upTo });
  const toRead = await tx.selectFrom('messages').selectAll().where('conversation_id', '=', conv.id).where('direction', '=', 'outbound')
    .where('status', '=', 'sent').where('provider_timestamp', '<=', upTo).orderBy('id').execute();
  if (!toRead.length) return { events: [] };
  await tx.updateTable('messages').set({ status: 'read', updated_at: now }).where('id', 'in', toRead.map((m) => m.id)).execute();
  return {
    events: toRead.map((m) => ({
      event: 'message.status' as const, account_id: account.id, provider: account.provider, conversation_id: conv.id,
      data: { message_id: m.id, provider_message_id: m.provider_message_id, conversation_id: conv.id, contact: contactSummary(contact), status: 'read', error: null },
    })),
  };
}

/** Applies one decoded provider event inside the caller's transaction. */
export async function applyProviderEvent(tx: Tx, account: AccountRow, ev: ProviderEvent, now: number, opts: { attempts?: number; historical?: boolean; rows?: BatchRows; byWebhook?: boolean } = {}): Promise<ApplyOutcome> {
  const a: ApplyContext = { tx, account, now, historical: Boolean(opts.historical), rows: opts.rows ?? null, byWebhook: Boolean(opts.byWebhook) };
  switch (ev.kind) {
    case 'customer_message': return customerMessage(a, ev);
    case 'business_message': return businessMessage(a, ev, opts.attempts ?? 0);
    case 'referral': return referral(a, ev);
    case 'read': return read(a, ev);
    default: return { events: [] };
  }
}
