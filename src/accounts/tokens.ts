import type { AppContext } from '../context.js';
import { ApiError } from '../core/errors.js';
import { classifyTiktokError, TiktokApiError } from '../providers/tiktok/errors.js';
import { tiktokClient } from '../providers/tiktok/provider.js';
import { getAccount, setAccountStatus, type AccountRow } from './store.js';

/** Refresh when less than this much validity is left (Chatwoot uses 5 minutes too). */
const REFRESH_AHEAD_MS = 5 * 60 * 1000;
const REFRESH_LOCK_MS = 30 * 1000;

export class AccountUnavailable extends ApiError {}

function unavailable(acct: AccountRow): AccountUnavailable {
  if (acct.status === 'disconnected') return new AccountUnavailable('account_disconnected', `account ${acct.id} is disconnected; connect it again`, { account_id: acct.id });
  if (acct.status === 'restricted') return new AccountUnavailable('account_restricted', acct.status_reason ?? 'this account cannot use the messaging API', { account_id: acct.id });
  return new AccountUnavailable('account_needs_reauth', acct.status_reason ?? `account ${acct.id} must be reconnected`, { account_id: acct.id, reconnect_url: '/connect/tiktok' });
}

/**
 * A valid access token for the account, refreshed ahead of expiry. Exactly one process refreshes at
 * a time (a conditional update on refresh_lock_until); the others wait for the new token_version.
 * A dead refresh token marks the account `needs_reauth`.
 */
export async function accessToken(ctx: AppContext, accountId: string, opts: { rejected?: string } = {}): Promise<string> {
  const deadline = ctx.clock() + REFRESH_LOCK_MS + 5000;
  for (;;) {
    const acct = await getAccount(ctx.database.db, accountId);
    if (acct.status !== 'active' || !acct.access_token_enc || !acct.refresh_token_enc) throw unavailable(acct);
    const now = ctx.clock();
    const fresh = (acct.token_expires_at ?? 0) - now > REFRESH_AHEAD_MS;
    const current = ctx.box.open(acct.access_token_enc);
    // A token TikTok rejected (40102) is refreshed only if it is still the stored one.
    if (fresh && current !== opts.rejected) return current;
    const won = await ctx.database.db.updateTable('accounts').set({ refresh_lock_until: now + REFRESH_LOCK_MS })
      .where('id', '=', accountId).where('token_version', '=', acct.token_version)
      .where((eb) => eb.or([eb('refresh_lock_until', 'is', null), eb('refresh_lock_until', '<', now)]))
      .executeTakeFirst();
    if (Number(won.numUpdatedRows) === 1) return refreshNow(ctx, acct);
    // Someone else is refreshing: wait for the token_version to move.
    if (ctx.clock() > deadline) throw new ApiError('provider_error', 'token refresh is taking too long', { account_id: accountId });
    await new Promise((r) => setTimeout(r, 50));
    const after = await getAccount(ctx.database.db, accountId);
    if (after.token_version !== acct.token_version && after.status === 'active' && after.access_token_enc) return ctx.box.open(after.access_token_enc);
  }
}

async function refreshNow(ctx: AppContext, acct: AccountRow): Promise<string> {
  try {
    const tokens = await tiktokClient(ctx.config).refresh(ctx.box.open(acct.refresh_token_enc!));
    const now = ctx.clock();
    // Rotated refresh token saved atomically with the access token: the old one no longer works.
    await ctx.database.db.updateTable('accounts').set({
      access_token_enc: ctx.box.seal(tokens.accessToken), refresh_token_enc: ctx.box.seal(tokens.refreshToken),
      token_expires_at: tokens.expiresAtMs, refresh_expires_at: tokens.refreshExpiresAtMs,
      token_version: acct.token_version + 1, refresh_lock_until: null, updated_at: now,
    }).where('id', '=', acct.id).execute();
    ctx.log.info({ account_id: acct.id }, 'access token refreshed');
    return tokens.accessToken;
  } catch (err) {
    await ctx.database.db.updateTable('accounts').set({ refresh_lock_until: null }).where('id', '=', acct.id).execute();
    const action = classifyTiktokError(err);
    if (action === 'reauthorize' || (err instanceof TiktokApiError && action === 'refuse')) {
      await setAccountStatus(ctx, acct.id, 'needs_reauth', `TikTok refused the refresh token (${err instanceof TiktokApiError ? err.code : 'error'}): reconnect the account`);
      throw unavailable({ ...acct, status: 'needs_reauth' });
    }
    throw err;
  }
}

/** Runs a TikTok call with the account's token; on 40102 refreshes once and retries. */
export async function withAccessToken<T>(ctx: AppContext, accountId: string, fn: (token: string) => Promise<T>): Promise<T> {
  const token = await accessToken(ctx, accountId);
  try {
    return await fn(token);
  } catch (err) {
    const action = classifyTiktokError(err);
    if (action === 'refresh') return fn(await accessToken(ctx, accountId, { rejected: token }));
    if (action === 'reauthorize') {
      await setAccountStatus(ctx, accountId, 'needs_reauth', `TikTok refused the access token (${(err as TiktokApiError).code}): reconnect the account`);
    }
    throw err;
  }
}
