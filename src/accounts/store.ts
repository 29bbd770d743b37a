import type { Selectable } from 'kysely';
import { newId } from '../core/ids.js';
import { notFound } from '../core/errors.js';
import type { AppContext } from '../context.js';
import type { AccountsTable } from '../db/schema.js';
import { parseJson, type Executor } from '../db/database.js';
import { appendEvents } from '../events/outbox.js';
import type { TokenSet } from '../providers/tiktok/api-client.js';

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
    backfill: parseJson<Record<string, unknown> | null>(a.backfill, null),
    created_at: new Date(a.created_at).toISOString(),
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
      token_expires_at: tokens.expiresAtMs, refresh_expires_at: tokens.refreshExpiresAtMs, refresh_lock_until: null, updated_at: now,
    };
    let id: string;
    if (existing) {
      id = existing.id;
      await tx.updateTable('accounts').set({ ...fields, token_version: existing.token_version + 1 }).where('id', '=', id).execute();
    } else {
      id = newId('acct', now);
      await tx.insertInto('accounts').values({ id, provider, external_id: tokens.openId, token_version: 1, backfill: null, created_at: now, ...fields }).execute();
    }
    if (status === 'active') {
      await tx.updateTable('inbound_events').set({ status: 'pending', next_attempt_at: now })
        .where('provider', '=', provider).where('business_id', '=', tokens.openId).where('status', '=', 'held').execute();
      await tx.updateTable('messages').set({ status: 'queued', next_attempt_at: now, updated_at: now })
        .where('account_id', '=', id).where('status', '=', 'held').execute();
    }
    await appendEvents(tx, [{
      event: 'account.connected', account_id: id, provider,
      data: { account: { id, external_id: tokens.openId, username: profile.username, status }, reconnected: Boolean(existing) },
    }], now);
    return { id, created: !existing };
  });
  ctx.bus.notify('inbound');
  ctx.bus.notify('outbound');
  ctx.bus.notify('deliveries');
  ctx.bus.notify('events');
  ctx.bus.notify('accounts');
  return { account: await getAccount(ctx.database.db, result.id), created: result.created };
}

/** Sets an account's status with its event (needs_reauth / disconnected), once per change. */
export async function setAccountStatus(
  ctx: AppContext, accountId: string, status: 'needs_reauth' | 'disconnected' | 'restricted', reason: string, extra: Partial<AccountsTable> = {},
): Promise<void> {
  const now = ctx.clock();
  const changed = await ctx.database.db.transaction().execute(async (tx) => {
    const acct = await getAccount(tx, accountId);
    if (acct.status === status) return false;
    await tx.updateTable('accounts').set({ status, status_reason: reason, updated_at: now, ...extra }).where('id', '=', accountId).execute();
    const event = status === 'needs_reauth' ? 'account.needs_reauth' as const : status === 'disconnected' ? 'account.disconnected' as const : null;
    if (event) {
      await appendEvents(tx, [{
        event, account_id: accountId, provider: acct.provider,
        data: { account: { id: acct.id, external_id: acct.external_id, username: acct.username, status }, reason },
      }], now);
    }
    return true;
  });
  if (changed) {
    ctx.log.warn({ account_id: accountId, status, reason }, 'account status changed');
    ctx.bus.notify('deliveries');
    ctx.bus.notify('events');
    ctx.bus.notify('accounts');
  }
}
