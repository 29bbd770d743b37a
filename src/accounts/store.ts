import type { Selectable } from 'kysely';
import { newId } from '../core/ids.js';
import { notFound } from '../core/errors.js';
import type { AppContext } from '../context.js';
import type { AccountsTable } from '../db/schema.js';
import { parseJson, type Executor, type Tx } from '../db/database.js';
import { announceEvents, appendEvents, tally } from '../events/outbox.js';
import type { TokenSet } from '../providers/tiktok/api-client.js';
import type { ContactSummary, EventInput } from '../events/types.js';
import { inboundWaiting } from '../ingest/inbound-log.js';
import { statusEvent } from '../messaging/queue.js';
import { WINDOW_POLICIES, windowAt } from '../messaging/window.js';
import { noteTokenLifetime } from './tokens.js';

export type AccountRow = Selectable<AccountsTable>;

/** The public shape of an account (DESIGN §5). Tokens never leave the store. */
export function accountView(a: AccountRow) {
  return {
    id: a.id,
    provider: a.provider,
    external_id: a.external_id,
    username: a.username,
    display_name: a.display_name,
    avatar_url: a.avatar_url,
    region: a.region,
    status: a.status,
    status_reason: a.status_reason,
    scopes: parseJson<string[]>(a.scopes, []),
    token_expires_at: a.token_expires_at ? new Date(a.token_expires_at).toISOString() : null,
    refresh_token_expires_at: a.refresh_expires_at ? new Date(a.refresh_expires_at).toISOString() : null,
    backfill: parseJson<BackfillState | null>(a.backfill, null),
    created_at: new Date(a.created_at).toISOString(),
  };
}

/**
 * Progress of an account's backfill (accounts.backfill JSON, shown in GET /v1/accounts/{id}).
 * `history_before`: messages older than this are stored as history (no message.received); newer
 * ones arrived after the account was connected and are announced once, whichever path sees them first.
 */
export interface BackfillState {
  status: 'queued' | 'running' | 'done' | 'failed';
  days: number;
  conversations_done: number;
  conversations_total: number | null;
  messages: number;
  requested_at: string;
  started_at: string | null;
  finished_at: string | null;
  error: string | null;
  history_before: string;
}

export function queuedBackfill(now: number, days: number, historyBefore: number): BackfillState {
  return {
    status: 'queued', days, conversations_done: 0, conversations_total: null, messages: 0,
    requested_at: new Date(now).toISOString(), started_at: null, finished_at: null, error: null, history_before: new Date(historyBefore).toISOString(),
  };
}

export async function getAccount(db: Executor, id: string): Promise<AccountRow> {
  const row = await db.selectFrom('accounts').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) throw notFound('account', id);
  return row;
}

export async function findAccountByExternalId(db: Executor, provider: string, externalId: string): Promise<AccountRow | undefined> {
  return db.selectFrom('accounts').selectAll().where('provider', '=', provider).where('external_id', '=', externalId).executeTakeFirst();
}

export interface Profile { username: string | null; displayName: string | null; avatarUrl: string | null; region: string | null }

/**
 * Connect or reconnect: one row per (provider, external id), so authorizing the same business again
 * updates the same account (same id, history intact). Held inbound webhooks and held replies are
 * released, and `account.connected` is emitted.
 */
export async function saveConnectedAccount(
  ctx: AppContext, provider: string, tokens: TokenSet, profile: Profile, status: 'active' | 'restricted', statusReason: string | null,
): Promise<{ account: AccountRow; created: boolean }> {
  const now = ctx.clock();
  const result = await ctx.database.db.transaction().execute(async (tx) => {
    const existing = await findAccountByExternalId(tx, provider, tokens.openId);
    const fields = {
      username: profile.username, display_name: profile.displayName, avatar_url: profile.avatarUrl, region: profile.region,
      status, status_reason: statusReason, scopes: JSON.stringify(tokens.scopes),
      access_token_enc: ctx.box.seal(tokens.accessToken), refresh_token_enc: ctx.box.seal(tokens.refreshToken),
      // On our clock (the client's may be another in tests): the lifetimes TikTok gave, from now.
      token_expires_at: now + tokens.expiresInMs, refresh_expires_at: now + tokens.refreshExpiresInMs, refresh_lock_until: null, updated_at: now,
    };
    let id: string;
    if (existing) {
      id = existing.id;
      await tx.updateTable('accounts').set({ ...fields, token_version: existing.token_version + 1 }).where('id', '=', id).execute();
    } else {
      id = newId('acct', now);
      await tx.insertInto('accounts').values({ id, provider, external_id: tokens.openId, token_version: 1, backfill: null, created_at: now, ...fields }).execute();
    }
    const events: EventInput[] = [{
      event: 'account.connected', account_id: id, provider,
      data: { account: { id, external_id: tokens.openId, username: profile.username, status }, reconnected: Boolean(existing) },
    }];
    if (status === 'active') {
      // Webhooks kept while it was disconnected are processed now, in their order.
      await releaseHeldInbound(tx, provider, tokens.openId, now).execute();
      const account = await getAccount(tx, id);
      events.push(...await releaseHeldReplies(ctx, tx, account, now, { inboundPending: await hasUnprocessedInbound(tx, provider, tokens.openId) }));
      if (ctx.config.backfillDays > 0) {
        const state = queuedBackfill(now, ctx.config.backfillDays, now);
        await tx.updateTable('accounts').set({ backfill: JSON.stringify(state) }).where('id', '=', id).execute();
      }
    } else {
      events.push(...await holdReplies(tx, id, provider, now, { code: 'account_restricted', message: statusReason ?? 'the account cannot use the messaging API; its replies wait' }));
    }
    return { id, created: !existing, appended: tally(await appendEvents(tx, events, now)) };
  });
  noteTokenLifetime(ctx, result.id, tokens.expiresInMs);
  ctx.bus.notify('inbound');
  ctx.bus.notify('outbound');
  announceEvents(ctx.bus, result.appended);
  ctx.bus.notify('accounts');
  return { account: await getAccount(ctx.database.db, result.id), created: result.created };
}

/** Sets an account's status with its event (needs_reauth / disconnected), once per change. */
export async function setAccountStatus(
  ctx: AppContext, accountId: string, status: 'needs_reauth' | 'disconnected' | 'restricted', reason: string, extra: Partial<AccountsTable> = {},
): Promise<void> {
  const now = ctx.clock();
  // null: the account already had this status (nothing written, nothing to announce).
  const appended = await ctx.database.db.transaction().execute(async (tx) => {
    const acct = await getAccount(tx, accountId);
    if (acct.status === status) return null;
    await tx.updateTable('accounts').set({ status, status_reason: reason, updated_at: now, ...extra }).where('id', '=', accountId).execute();
    const events: EventInput[] = [];
    const event = status === 'needs_reauth' ? 'account.needs_reauth' as const : status === 'disconnected' ? 'account.disconnected' as const : null;
    if (event) {
      events.push({
        event, account_id: accountId, provider: acct.provider,
        data: { account: { id: acct.id, external_id: acct.external_id, username: acct.username, status }, reason, reconnect_url: '/connect/tiktok' },
      });
    }
    // Replies waiting to be sent are held until the account is connected again.
    const code = status === 'needs_reauth' ? 'account_needs_reauth' : status === 'disconnected' ? 'account_disconnected' : 'account_restricted';
    events.push(...await holdReplies(tx, accountId, acct.provider, now, { code, message: reason }));
    return tally(await appendEvents(tx, events, now));
  });
  if (appended) {
    // Loud: an account that cannot send is what operators must hear about first.
    const level = status === 'disconnected' ? 'warn' : 'error';
    ctx.log[level]({ account_id: accountId, status, reason }, status === 'disconnected' ? 'account disconnected' : `account ${status}: ${reason}`);
    announceEvents(ctx.bus, appended);
    ctx.bus.notify('accounts', accountId);
  }
}

/** Whether webhooks of the business wait to be processed (held while disconnected, or pending). */
export async function hasUnprocessedInbound(db: Executor, provider: string, businessId: string): Promise<boolean> {
  return Boolean(await waitingInbound(db, provider, businessId).executeTakeFirst());
}

/** One webhook of the business that waits to be processed (through inbound_events_waiting). */
export const waitingInbound = (db: Executor, provider: string, businessId: string) =>
  db.selectFrom('inbound_events').select('seq').where('provider', '=', provider).where('business_id', '=', businessId)
    .where(inboundWaiting()).limit(1);

/** Puts the webhooks kept while the business was disconnected back in the processor's queue, in their order. */
export const releaseHeldInbound = (db: Executor, provider: string, businessId: string, now: number) =>
  db.updateTable('inbound_events').set({ status: 'pending', next_attempt_at: now })
    .where('provider', '=', provider).where('business_id', '=', businessId).where(inboundWaiting()).where('status', '=', 'held');

interface PendingReply {
  id: string;
  conversation_id: string;
  last_inbound_at: number | null;
  outbound_since_inbound: number;
  contact: ContactSummary;
}

async function pendingReplies(tx: Tx, accountId: string, status: 'queued' | 'held'): Promise<PendingReply[]> {
  const rows = await tx.selectFrom('messages as m')
    .innerJoin('conversations as c', 'c.id', 'm.conversation_id')
    .innerJoin('contacts as ct', 'ct.id', 'c.contact_id')
    .select(['m.id', 'm.conversation_id', 'c.last_inbound_at', 'c.outbound_since_inbound', 'ct.id as contact_id', 'ct.username', 'ct.display_name', 'ct.is_follower'])
    .where('m.account_id', '=', accountId).where('m.direction', '=', 'outbound').where('m.status', '=', status)
    .orderBy('m.id').execute();
  return rows.map((r) => ({
    id: r.id, conversation_id: r.conversation_id, last_inbound_at: r.last_inbound_at, outbound_since_inbound: r.outbound_since_inbound,
    contact: { id: r.contact_id, username: r.username, display_name: r.display_name, is_follower: Boolean(r.is_follower) },
  }));
}

const replyStatus = (accountId: string, provider: string, r: PendingReply, status: string, error: Record<string, unknown> | null) => statusEvent({
  accountId, provider, conversationId: r.conversation_id, contact: r.contact, messageId: r.id, providerMessageId: null, status, error,
});

/** Queued replies of an account that cannot send become `held` (with their message.status events). */
export async function holdReplies(tx: Tx, accountId: string, provider: string, now: number, reason: { code: string; message: string }): Promise<EventInput[]> {
  const rows = await pendingReplies(tx, accountId, 'queued');
  if (!rows.length) return [];
  await tx.updateTable('messages').set({ status: 'held', updated_at: now }).where('id', 'in', rows.map((r) => r.id)).where('status', '=', 'queued').execute();
  return rows.map((r) => replyStatus(accountId, provider, r, 'held', { ...reason, provider_code: null }));
}

/**
 * The release policy for held replies, when their account can send again (reconnect):
 * - the conversation's reply window is still open: queued again, sent in order by the sender;
 * - the window closed meanwhile: failed with `window_closed`. Nothing is given back: a closed
 *   window has no quota left to return, and the next customer message starts a fresh one;
 * - the window looks closed but webhooks kept while the account was disconnected are still to be
 *   processed (`inboundPending`): they may reopen it, so the reply stays held and the token keeper
 *   applies this policy again once they are processed.
 * Returns the message.status events to append in the caller's transaction.
 */
export async function releaseHeldReplies(ctx: AppContext, tx: Tx, account: AccountRow, now: number, opts: { inboundPending: boolean }): Promise<EventInput[]> {
  const held = await pendingReplies(tx, account.id, 'held');
  if (!held.length) return [];
  const policy = WINDOW_POLICIES[ctx.config.tiktokWindowPolicy];
  const byConversation = new Map<string, PendingReply[]>();
  for (const r of held) byConversation.set(r.conversation_id, [...(byConversation.get(r.conversation_id) ?? []), r]);
  const events: EventInput[] = [];
  const release: string[] = [];
  const fail: string[] = [];
  for (const replies of byConversation.values()) {
    const c = replies[0];
    // The held replies already took their quota when they were accepted: judge the window without them.
    const w = windowAt(policy, { lastInboundAt: c.last_inbound_at, outboundSinceInbound: Math.max(0, c.outbound_since_inbound - replies.length) }, now);
    if (w.open) {
      release.push(...replies.map((r) => r.id));
      events.push(...replies.map((r) => replyStatus(account.id, account.provider, r, 'queued', null)));
    } else if (!opts.inboundPending) {
      const error = {
        code: 'window_closed', provider_code: null,
        message: w.expires_at
          ? `the reply was held while the account could not send, and its reply window closed at ${new Date(w.expires_at).toISOString()}; it was not sent (the window reopens when the customer writes again)`
          : 'the reply was held while the account could not send, and the conversation has no open reply window; it was not sent',
      };
      fail.push(...replies.map((r) => r.id));
      events.push(...replies.map((r) => replyStatus(account.id, account.provider, r, 'failed', error)));
      await tx.updateTable('messages').set({ status: 'failed', error: JSON.stringify(error), counted_in_window: 0, next_attempt_at: null, updated_at: now })
        .where('id', 'in', replies.map((r) => r.id)).where('status', '=', 'held').execute();
    }
  }
  if (release.length) {
    await tx.updateTable('messages').set({ status: 'queued', next_attempt_at: now, updated_at: now }).where('id', 'in', release).where('status', '=', 'held').execute();
  }
  if (release.length || fail.length) {
    ctx.log.info({ account_id: account.id, released: release.length, failed_window_closed: fail.length }, 'held replies released');
  }
  return events;
}
