import type { AppContext } from '../context.js';
import { ApiError } from '../core/errors.js';
import { TiktokApiError } from '../providers/tiktok/errors.js';
import { TIKTOK_REQUIRED_SCOPES, tiktokClient } from '../providers/tiktok/provider.js';
import { currentTiktokWebhook } from '../providers/tiktok/webhook-registration.js';
import { backfillState } from './backfill.js';
import { getAccount } from './store.js';
import { withAccessToken } from './tokens.js';
import { inboundWaiting } from '../ingest/inbound-log.js';
import { isPending } from '../messaging/queue.js';

export const expectedWebhookUrl = (ctx: AppContext) => `${ctx.config.publicUrl}/webhooks/tiktok`;

export interface WebhookWiring {
  /** true: TikTok calls dmgate; false: it calls something else (or nothing); null: unknown. */
  ok: boolean | null;
  callback_url: string | null;
  expected: string;
  error: string | null;
}

/** What TikTok has on file as the app's DM webhook (business/webhook/list), compared with ours. */
export async function webhookWiring(ctx: AppContext): Promise<WebhookWiring> {
  const expected = expectedWebhookUrl(ctx);
  try {
    const callback = await currentTiktokWebhook(ctx.config);
    return { ok: callback === expected, callback_url: callback, expected, error: null };
  } catch (err) {
    return { ok: null, callback_url: null, expected, error: err instanceof Error ? err.message : String(err) };
  }
}

/**
 * At start (not in sandbox mode, which wires itself): a warning naming the fix when TikTok's DM
 * webhook is not dmgate's URL. Never throws; never delays the start.
 */
export async function checkWebhookWiring(ctx: AppContext): Promise<WebhookWiring> {
  const w = await webhookWiring(ctx);
  const fix = 'run "dmgate tiktok register-webhook" with DMGATE_PUBLIC_URL set to the address TikTok reaches this server at';
  if (w.ok === null) {
    ctx.log.warn({ expected: w.expected, error: w.error }, `could not read the TikTok app's DM webhook (business/webhook/list); if DMs do not arrive, ${fix}`);
  } else if (!w.callback_url) {
    ctx.log.warn({ expected: w.expected }, `no DM webhook is registered for this TikTok app, so TikTok sends dmgate no DMs: ${fix}`);
  } else if (!w.ok) {
    ctx.log.warn({ callback_url: w.callback_url, expected: w.expected }, `TikTok sends this app's DMs to ${w.callback_url}, not to dmgate (${w.expected}): ${fix}`);
  } else {
    ctx.log.info({ callback_url: w.callback_url }, 'TikTok DM webhook points at dmgate');
  }
  return w;
}

/**
 * GET /v1/accounts/{id}/health: the stored state plus a live check at TikTok (token_info through
 * the account's token, refreshed if TikTok says it expired; a refused refresh marks the account
 * `needs_reauth` on the spot), the app's webhook wiring, and what waits on the account.
 */
export async function accountHealth(ctx: AppContext, accountId: string) {
  const db = ctx.database.db;
  const checkedAt = ctx.clock();
  let acct = await getAccount(db, accountId);
  let tiktok: { ok: boolean | null; scopes: string[]; missing_scopes: string[]; error: string | null; provider_code: number | null } = {
    ok: null, scopes: [], missing_scopes: [], error: null, provider_code: null,
  };
  if (acct.status === 'active') {
    try {
      const info = await withAccessToken(ctx, acct.id, (t) => tiktokClient(ctx.config).tokenInfo(t));
      const missing = info.scopes.length ? TIKTOK_REQUIRED_SCOPES.filter((s) => !info.scopes.includes(s)) : [];
      tiktok = { ok: missing.length === 0, scopes: info.scopes, missing_scopes: missing, error: null, provider_code: null };
    } catch (err) {
      tiktok = {
        ok: err instanceof ApiError || err instanceof TiktokApiError ? false : null, scopes: [], missing_scopes: [],
        error: err instanceof Error ? err.message : String(err), provider_code: err instanceof TiktokApiError ? err.code : null,
      };
    }
    acct = await getAccount(db, accountId);
  }
  const count = async (table: 'messages' | 'inbound_events', status: string) => {
    const q = table === 'messages'
      ? db.selectFrom('messages').select((eb) => eb.fn.countAll<number>().as('n')).where('account_id', '=', acct.id).where(isPending()).where('direction', '=', 'outbound').where('status', '=', status as 'held')
      : db.selectFrom('inbound_events').select((eb) => eb.fn.countAll<number>().as('n')).where('provider', '=', acct.provider).where('business_id', '=', acct.external_id).where(inboundWaiting()).where('status', '=', status as 'held');
    return Number((await q.executeTakeFirstOrThrow()).n);
  };
  const webhook = ctx.config.sandbox ? { ok: null, callback_url: null, expected: expectedWebhookUrl(ctx), error: 'sandbox mode wires its own webhook' } : await webhookWiring(ctx);
  const secondsLeft = (ms: number | null) => (ms === null ? null : Math.round((ms - checkedAt) / 1000));
  const healthy = acct.status === 'active' && tiktok.ok !== false && webhook.ok !== false;
  let fix: string | null = null;
  if (acct.status !== 'active') fix = acct.status_reason ?? 'reconnect the account (/connect/tiktok)';
  else if (tiktok.ok === false) fix = tiktok.missing_scopes.length ? 'reconnect the account (/connect/tiktok) and approve every requested permission' : `TikTok refused the check: ${tiktok.error}`;
  else if (webhook.ok === false) fix = 'TikTok sends DMs elsewhere: run "dmgate tiktok register-webhook"';
  return {
    account_id: acct.id,
    status: acct.status,
    status_reason: acct.status_reason,
    healthy,
    fix,
    checked_at: new Date(checkedAt).toISOString(),
    token: {
      expires_at: acct.token_expires_at ? new Date(acct.token_expires_at).toISOString() : null,
      expires_in_s: secondsLeft(acct.token_expires_at),
      refresh_token_expires_at: acct.refresh_expires_at ? new Date(acct.refresh_expires_at).toISOString() : null,
      refresh_token_expires_in_s: secondsLeft(acct.refresh_expires_at),
    },
    tiktok,
    webhook,
    backfill: backfillState(acct),
    waiting: {
      held_replies: await count('messages', 'held'),
      queued_replies: await count('messages', 'queued'),
      held_webhooks: await count('inbound_events', 'held'),
    },
  };
}
