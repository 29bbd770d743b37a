import type { AppContext } from '../context.js';
import { ApiError } from '../core/errors.js';
import { classifyTiktokError, TiktokApiError } from '../providers/tiktok/errors.js';
import { tiktokClient } from '../providers/tiktok/provider.js';
import { getAccount, setAccountStatus, type AccountRow } from './store.js';
import { restrictedReason } from './reasons.js';

/** On use, refresh when less than this much validity is left (Chatwoot uses 5 minutes too). */
const ON_USE_AHEAD_MS = 5 * 60 * 1000;
/** How long one refresher holds an account; longer than the TikTok client's 15 s timeout. */
const REFRESH_LOCK_MS = 30 * 1000;
/** TikTok codes that mean "the app's credentials are wrong": no reconnect fixes that. */
const APP_CREDENTIAL_CODES = new Set([40101, 40113]);

export class AccountUnavailable extends ApiError {}

function unavailable(acct: AccountRow): AccountUnavailable {
  if (acct.status === 'disconnected') return new AccountUnavailable('account_disconnected', `account ${acct.id} is disconnected; connect it again`, { account_id: acct.id, reconnect_url: '/connect/tiktok' });
  if (acct.status === 'restricted') return new AccountUnavailable('account_restricted', acct.status_reason ?? 'this account cannot use the messaging API', { account_id: acct.id });
  return new AccountUnavailable('account_needs_reauth', acct.status_reason ?? `account ${acct.id} must be reconnected`, { account_id: acct.id, reconnect_url: '/connect/tiktok' });
}

/**
 * Access-token lifetimes seen in this process (from connects and refreshes), per account: a
 * provider that issues short tokens must not make the keeper refresh on every tick.
 */
const lifetimes = new WeakMap<AppContext, Map<string, number>>();

export function noteTokenLifetime(ctx: AppContext, accountId: string, lifetimeMs: number): void {
  let m = lifetimes.get(ctx);
  if (!m) lifetimes.set(ctx, m = new Map());
  m.set(accountId, Math.max(0, lifetimeMs));
}

/** How long before expiry the keeper refreshes: DMGATE_TOKEN_REFRESH_AHEAD, at most half a token's life. */
export function keeperAheadMs(ctx: AppContext, accountId: string): number {
  const configured = ctx.config.tokenRefreshAheadS * 1000;
  const life = lifetimes.get(ctx)?.get(accountId);
  return life ? Math.min(configured, Math.floor(life / 2)) : configured;
}

/** The on-use margin: 5 minutes, or less when the keeper's margin is smaller (short-lived tokens). */
export const onUseAheadMs = (ctx: AppContext, accountId: string) => Math.min(ON_USE_AHEAD_MS, keeperAheadMs(ctx, accountId));

export interface AccessTokenOptions {
  /** A token TikTok rejected (40102): refreshed only if it is still the stored one. */
  rejected?: string;
  /** Refresh when less than this much validity is left (default: the on-use margin). */
  aheadMs?: number;
}

/**
 * A valid access token for the account, refreshed ahead of expiry. Exactly one process refreshes at
 * a time (a conditional update on refresh_lock_until and token_version); the others wait for the
 * new token_version. A dead refresh token marks the account `needs_reauth`.
 */
export async function accessToken(ctx: AppContext, accountId: string, opts: AccessTokenOptions = {}): Promise<string> {
  const started = Date.now();
  const ahead = opts.aheadMs ?? onUseAheadMs(ctx, accountId);
  for (;;) {
    const acct = await getAccount(ctx.database.db, accountId);
    if (acct.status !== 'active' || !acct.access_token_enc || !acct.refresh_token_enc) throw unavailable(acct);
    const now = ctx.clock();
    const fresh = (acct.token_expires_at ?? 0) - now > ahead;
    const current = ctx.box.open(acct.access_token_enc);
    if (fresh && current !== opts.rejected) return current;
    const won = await ctx.database.db.updateTable('accounts').set({ refresh_lock_until: now + REFRESH_LOCK_MS })
      .where('id', '=', accountId).where('token_version', '=', acct.token_version).where('status', '=', 'active')
      .where((eb) => eb.or([eb('refresh_lock_until', 'is', null), eb('refresh_lock_until', '<', now)]))
      .executeTakeFirst();
    if (Number(won.numUpdatedRows) === 1) return refreshNow(ctx, acct);
    // Someone else is refreshing (or just did): wait for the token_version to move.
    for (;;) {
      if (Date.now() - started > REFRESH_LOCK_MS + 5000) throw new ApiError('provider_error', 'token refresh is taking too long', { account_id: accountId });
      await new Promise((r) => setTimeout(r, 50));
      const after = await getAccount(ctx.database.db, accountId);
      if (after.status !== 'active') throw unavailable(after);
      if (after.token_version !== acct.token_version && after.access_token_enc) return ctx.box.open(after.access_token_enc);
      // The other refresher gave up (a transient failure) or its lock lapsed: try again ourselves.
      if (after.refresh_lock_until === null || after.refresh_lock_until < ctx.clock()) break;
    }
  }
}

async function refreshNow(ctx: AppContext, acct: AccountRow): Promise<string> {
  const startedAt = ctx.clock();
  try {
    const tokens = await tiktokClient(ctx.config).refresh(ctx.box.open(acct.refresh_token_enc!));
    const now = ctx.clock();
    // Expiries on our clock, counted from when we asked (TikTok's clock may differ; being early is safe).
    const expiresAt = startedAt + tokens.expiresInMs;
    // Rotated refresh token saved atomically with the access token: the old one no longer works.
    await ctx.database.db.updateTable('accounts').set({
      access_token_enc: ctx.box.seal(tokens.accessToken), refresh_token_enc: ctx.box.seal(tokens.refreshToken),
      token_expires_at: expiresAt, refresh_expires_at: startedAt + tokens.refreshExpiresInMs,
      token_version: acct.token_version + 1, refresh_lock_until: null, updated_at: now,
    }).where('id', '=', acct.id).execute();
    noteTokenLifetime(ctx, acct.id, tokens.expiresInMs);
    ctx.log.info({ account_id: acct.id, expires_at: new Date(expiresAt).toISOString() }, 'access token refreshed');
    ctx.bus.notify('accounts', acct.id);
    return tokens.accessToken;
  } catch (err) {
    await ctx.database.db.updateTable('accounts').set({ refresh_lock_until: null }).where('id', '=', acct.id).execute();
    if (!(err instanceof TiktokApiError)) throw err; // network or 5xx: the keeper (or the next use) tries again
    const action = classifyTiktokError(err);
    if (action === 'retry') throw err;
    if (APP_CREDENTIAL_CODES.has(err.code)) {
      ctx.log.error({ account_id: acct.id, provider_code: err.code },
        'TikTok refused the app credentials while refreshing a token: check TIKTOK_APP_ID and TIKTOK_APP_SECRET (the account itself is fine)');
      throw new ApiError('provider_error', `TikTok refused the app credentials (${err.code}): check TIKTOK_APP_ID and TIKTOK_APP_SECRET`, { account_id: acct.id, provider_code: err.code });
    }
    if (action === 'restricted') {
      await setAccountStatus(ctx, acct.id, 'restricted', restrictedReason(`TikTok answered ${err.code} when renewing its token`));
      throw unavailable({ ...acct, status: 'restricted', status_reason: restrictedReason(`TikTok answered ${err.code}`) });
    }
    const reason = deadRefreshReason(acct, err.code);
    await setAccountStatus(ctx, acct.id, 'needs_reauth', reason);
    throw unavailable({ ...acct, status: 'needs_reauth', status_reason: reason });
  }
}

/** What a dead refresh token means and how to fix it, for status_reason and the log. */
export function deadRefreshReason(acct: Pick<AccountRow, 'username' | 'external_id'>, code: number | null): string {
  const name = acct.username ? `@${acct.username}` : acct.external_id;
  const why = code === 40103 ? 'expired or revoked' : code === 40107 ? 'invalid or already used' : code === null ? 'expired' : 'refused';
  return `TikTok no longer accepts ${name}'s refresh token (${code ?? 'expired'}: ${why}; the app's access was removed in TikTok, or the one-year authorization ran out). `
    + `Fix: reconnect the account — open /connect/tiktok as an admin (or run "dmgate accounts connect") and authorize ${name} again. Its replies wait, held, until then.`;
}

/**
 * Runs a TikTok call with the account's token. On 40102 (expired) or 40105/40104 (invalid) it
 * refreshes once and retries: a refresh that TikTok refuses marks the account `needs_reauth`.
 */
export async function withAccessToken<T>(ctx: AppContext, accountId: string, fn: (token: string) => Promise<T>): Promise<T> {
  const token = await accessToken(ctx, accountId);
  try {
    return await fn(token);
  } catch (err) {
    const action = classifyTiktokError(err);
    const code = err instanceof TiktokApiError ? err.code : null;
    if (action === 'refresh' || code === 40105 || code === 40104) return fn(await accessToken(ctx, accountId, { rejected: token }));
    if (action === 'reauthorize') {
      const acct = await getAccount(ctx.database.db, accountId);
      await setAccountStatus(ctx, accountId, 'needs_reauth', deadRefreshReason(acct, code));
    }
    throw err;
  }
}
