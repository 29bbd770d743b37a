import { randomBytes } from 'node:crypto';
import type { AppContext } from '../context.js';
import { sha256Hex } from '../core/crypto.js';
import { ApiError } from '../core/errors.js';
import { TiktokApiError } from '../providers/tiktok/errors.js';
import { tiktokClient, TIKTOK_REQUIRED_SCOPES, TIKTOK_SCOPES } from '../providers/tiktok/provider.js';
import { saveConnectedAccount, type AccountRow } from './store.js';
import { regionReason, restrictedReason } from './reasons.js';

const STATE_TTL_MS = 10 * 60 * 1000;

export const callbackUrl = (ctx: AppContext) => `${ctx.config.publicUrl}/connect/tiktok/callback`;

/** TikTok's consent URL with a single-use state that expires in 10 minutes. */
export async function startConnect(ctx: AppContext, returnTo: string | null = null): Promise<string> {
  const state = randomBytes(24).toString('base64url');
  const now = ctx.clock();
  await ctx.database.db.insertInto('oauth_states').values({
    state_hash: sha256Hex(state), provider: 'tiktok', created_at: now, expires_at: now + STATE_TTL_MS, used_at: null, return_to: returnTo,
  }).execute();
  await ctx.database.db.deleteFrom('oauth_states').where('expires_at', '<', now - STATE_TTL_MS).execute();
  const url = new URL(ctx.config.tiktokAuthUrl);
  url.searchParams.set('client_key', ctx.config.tiktokAppId);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('scope', TIKTOK_SCOPES.join(','));
  url.searchParams.set('redirect_uri', callbackUrl(ctx));
  url.searchParams.set('state', state);
  return url.toString();
}

/** Errors of the connect flow name the fix, because the person reading them is mid-setup. */
export class ConnectError extends ApiError {}

const FIXES: Record<string, string> = {
  invalid_scope: 'The TikTok app lacks a messaging scope. In the TikTok for Business developer portal, add the "TikTok Accounts" and "Business Messaging" permissions (scopes message.list.read, message.list.send, message.list.manage) to the app, then connect again.',
  access_denied: 'The authorization was cancelled in TikTok. Connect again and approve the requested permissions.',
};

export interface CallbackQuery { code?: string; state?: string; error?: string; error_code?: string; error_description?: string; error_type?: string }

/**
 * The OAuth callback: checks the state (single use, unexpired), exchanges the code, checks the
 * granted scopes, reads the business profile, and saves (or updates) the account.
 */
export async function finishConnect(ctx: AppContext, q: CallbackQuery): Promise<{ account: AccountRow; created: boolean; returnTo: string | null }> {
  const now = ctx.clock();
  let returnTo: string | null = null;
  if (q.state) {
    // Consume the state atomically: a replayed callback finds it used.
    const hash = sha256Hex(q.state);
    const res = await ctx.database.db.updateTable('oauth_states').set({ used_at: now })
      .where('state_hash', '=', hash).where('used_at', 'is', null).where('expires_at', '>', now).executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) {
      throw new ConnectError('invalid_request', 'This authorization link was already used or has expired. Start the connection again from dmgate.', { reason: 'state' });
    }
    returnTo = (await ctx.database.db.selectFrom('oauth_states').select('return_to').where('state_hash', '=', hash).executeTakeFirst())?.return_to ?? null;
  } else {
    throw new ConnectError('invalid_request', 'The callback has no state. Start the connection again from dmgate.', { reason: 'state' });
  }
  if (q.error) {
    const fix = FIXES[q.error] ?? 'Check the TikTok app settings and connect again.';
    throw new ConnectError('forbidden', `TikTok refused the authorization (${q.error}${q.error_description ? ': ' + q.error_description : ''}). ${fix}`, {
      error: q.error, error_code: q.error_code ?? null, error_type: q.error_type ?? null,
    });
  }
  if (!q.code) throw new ConnectError('invalid_request', 'The callback has no authorization code. Start the connection again.', {});

  const client = tiktokClient(ctx.config);
  let tokens;
  try {
    tokens = await client.exchangeCode(q.code, callbackUrl(ctx));
  } catch (err) {
    if (err instanceof TiktokApiError) {
      throw new ConnectError('provider_error', `TikTok did not accept the authorization code (${err.code}). Start the connection again; codes are single use and expire after 10 minutes.`, { provider_code: err.code });
    }
    throw new ConnectError('provider_error', 'TikTok could not be reached to finish the connection. Try again.', {});
  }
  const missing = TIKTOK_REQUIRED_SCOPES.filter((s) => !tokens.scopes.includes(s));
  if (missing.length) {
    throw new ConnectError('forbidden', `The authorization did not grant ${missing.join(', ')}. ${FIXES.invalid_scope}`, { missing_scopes: missing });
  }
  let profile = { username: null as string | null, displayName: null as string | null, avatarUrl: null as string | null, region: null as string | null };
  let status: 'active' | 'restricted' = 'active';
  let reason: string | null = null;
  try {
    const b = await client.getBusiness(tokens.accessToken, tokens.openId);
    profile = { username: b.username ?? null, displayName: b.display_name ?? null, avatarUrl: b.profile_image ?? null, region: b.region?.toUpperCase() ?? null };
  } catch (err) {
    if (err instanceof TiktokApiError && (err.code === 40001 || err.code === 40118)) {
      status = 'restricted';
      reason = restrictedReason(`TikTok answered ${err.code} (no permission: the account lacks Advanced Access, or the app is not allowlisted for it)`);
    } else {
      throw new ConnectError('provider_error', 'TikTok could not return the business profile. Try connecting again.', {});
    }
  }
  if (profile.region && ctx.config.tiktokRestrictedRegions.includes(profile.region)) {
    status = 'restricted';
    reason = regionReason(profile.region);
  }
  const { account, created } = await saveConnectedAccount(ctx, 'tiktok', tokens, profile, status, reason);
  ctx.log.info({ account_id: account.id, username: account.username, created, status }, created ? 'account connected' : 'account reconnected');
  return { account, created, returnTo };
}

export { restrictedReason };
