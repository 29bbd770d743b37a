import { randomBytes } from 'node:crypto';
import type { AppContext } from '../context.js';
import { ApiError } from '../core/errors.js';
import { tryAcquireLease } from '../db/leases.js';
import { announceEvents, appendEvents, tally } from '../events/outbox.js';
import { TIKTOK_REQUIRED_SCOPES, tiktokClient } from '../providers/tiktok/provider.js';
import type { Worker } from '../runtime.js';
import { getAccount, hasUnprocessedInbound, releaseHeldReplies, setAccountStatus } from './store.js';
import { accessToken, deadRefreshReason, keeperAheadMs, withAccessToken } from './tokens.js';
import { isPending } from '../messaging/queue.js';

/**
 * The token keeper (worker roles): keeps every active account's access token valid in the
 * background, so an idle account never lapses, and notices dead authorizations at once.
 *
 * - Refreshes each token DMGATE_TOKEN_REFRESH_AHEAD before it expires (at most half its life
 *   ahead). The refresh itself is tokens.ts's: one refresher per account across processes.
 * - Every DMGATE_TOKEN_CHECK_INTERVAL asks TikTok (token_info) whether the token still works: a
 *   revoked authorization turns into `needs_reauth` (with its event and the fix) without waiting
 *   for a reply to fail. A refresh token past its expiry does so without asking.
 * - Transient failures (network, TikTok 5xxxx) back off per account and are retried.
 * - Releases replies left `held` on an active account (after a reconnect, once the webhooks kept
 *   while it was disconnected are processed): store.ts's releaseHeldReplies policy.
 *
 * It sleeps until the next token is due (at most a minute) and wakes on the bus ('accounts').
 * On PostgreSQL one process of the cluster runs it at a time (a lease), so token checks are not
 * repeated by every worker; refreshes are safe from any process anyway.
 */

const MAX_SLEEP_MS = 60_000;
const MIN_SLEEP_MS = 50;
const LEASE_MS = 90_000;
const BACKOFF_MS = [5_000, 15_000, 60_000, 300_000];
/** Warn this long before the one-year authorization runs out (only a reconnect renews it). */
const REAUTH_WARNING_MS = 14 * 86_400_000;
/** Held replies waiting for their account's kept webhooks to be processed: look again this soon. */
const HELD_RECHECK_MS = 500;

interface AccountInfo {
  id: string;
  provider: string;
  external_id: string;
  username: string | null;
  token_expires_at: number | null;
  refresh_expires_at: number | null;
}

export interface TokenKeeper extends Worker {
  /** Runs one pass now (tests, `POST …/health`); resolves when it is done. */
  runOnce(): Promise<void>;
}

export function startTokenKeeper(ctx: AppContext): TokenKeeper {
  const owner = `token-keeper:${process.pid}:${randomBytes(4).toString('hex')}`;
  const nextCheckAt = new Map<string, number>(); // token_info checks, real time
  const backoff = new Map<string, { failures: number; until: number }>(); // real time
  const warnedReauth = new Set<string>();
  let stopped = false;
  let running: Promise<void> | null = null;
  let again = false;
  let timer: NodeJS.Timeout | null = null;
  let heldWaiting = false;

  const schedule = (delayMs: number) => {
    if (stopped) return;
    if (timer) clearTimeout(timer);
    const delay = Math.max(MIN_SLEEP_MS, Math.min(MAX_SLEEP_MS, delayMs));
    timer = setTimeout(() => { timer = null; void wake(); }, delay);
    timer.unref();
  };

  const wake = (): Promise<void> => {
    if (stopped) return Promise.resolve();
    if (running) { again = true; return running; }
    running = pass().then(schedule, (err) => {
      ctx.log.error({ err }, 'token keeper pass failed');
      schedule(5000);
    }).finally(() => {
      running = null;
      if (again) { again = false; void wake(); }
    });
    return running;
  };

  /** One pass; returns how long to sleep. */
  async function pass(): Promise<number> {
    if (ctx.database.dialect === 'postgres' && !(await tryAcquireLease(ctx.database, 'token-keeper', owner, LEASE_MS, ctx.clock()))) {
      return LEASE_MS / 3;
    }
    const accounts: AccountInfo[] = await ctx.database.db.selectFrom('accounts')
      .select(['id', 'provider', 'external_id', 'username', 'token_expires_at', 'refresh_expires_at'])
      .where('status', '=', 'active').where('refresh_token_enc', 'is not', null).execute();
    let sleepMs = MAX_SLEEP_MS;
    for (const a of accounts) {
      if (stopped) break;
      sleepMs = Math.min(sleepMs, await keep(a));
    }
    await releaseHeld();
    return heldWaiting ? Math.min(sleepMs, HELD_RECHECK_MS) : sleepMs;
  }

  /** Keeps one account; returns when it next needs attention (ms from now). */
  async function keep(a: AccountInfo): Promise<number> {
    const nowReal = Date.now();
    const off = backoff.get(a.id);
    if (off && off.until > nowReal) return off.until - nowReal;
    const now = ctx.clock();
    if (a.refresh_expires_at !== null && a.refresh_expires_at <= now) {
      await setAccountStatus(ctx, a.id, 'needs_reauth', deadRefreshReason(a, null));
      return MAX_SLEEP_MS;
    }
    if (a.refresh_expires_at !== null && a.refresh_expires_at - now < REAUTH_WARNING_MS && !warnedReauth.has(a.id)) {
      warnedReauth.add(a.id);
      ctx.log.warn({ account_id: a.id, username: a.username, authorization_expires_at: new Date(a.refresh_expires_at).toISOString() },
        'this account\'s TikTok authorization ends soon and only a reconnect renews it: reconnect it (/connect/tiktok) before then');
    }
    const ahead = keeperAheadMs(ctx, a.id);
    const due = (a.token_expires_at ?? 0) - ahead - now;
    const interval = ctx.config.tokenCheckIntervalS * 1000;
    try {
      if (due <= 0) {
        await accessToken(ctx, a.id, { aheadMs: ahead });
        nextCheckAt.set(a.id, nowReal + interval);
      } else if (interval > 0) {
        const checkAt = nextCheckAt.get(a.id);
        if (checkAt === undefined) nextCheckAt.set(a.id, nowReal + interval);
        else if (checkAt <= nowReal) {
          await checkAtTiktok(a);
          nextCheckAt.set(a.id, nowReal + interval);
        }
      }
      backoff.delete(a.id);
    } catch (err) {
      if (err instanceof ApiError && err.code.startsWith('account_')) return MAX_SLEEP_MS; // its status changed, loudly
      const failures = (off?.failures ?? 0) + 1;
      const wait = BACKOFF_MS[Math.min(failures - 1, BACKOFF_MS.length - 1)];
      backoff.set(a.id, { failures, until: nowReal + wait });
      ctx.log.warn({ account_id: a.id, failures, retry_in_s: wait / 1000, error: err instanceof Error ? err.message : String(err) },
        'token keeper: could not renew the access token; retrying');
      return wait;
    }
    const after = await getAccount(ctx.database.db, a.id);
    const nextDue = (after.token_expires_at ?? 0) - keeperAheadMs(ctx, a.id) - ctx.clock();
    const nextCheck = interval > 0 ? (nextCheckAt.get(a.id) ?? Infinity) - Date.now() : Infinity;
    return Math.max(0, Math.min(nextDue, nextCheck));
  }

  /** token_info: a 40102/40105 goes through a refresh; a refused refresh is `needs_reauth`. */
  async function checkAtTiktok(a: AccountInfo): Promise<void> {
    const info = await withAccessToken(ctx, a.id, (t) => tiktokClient(ctx.config).tokenInfo(t));
    const missing = TIKTOK_REQUIRED_SCOPES.filter((s) => !info.scopes.includes(s));
    if (info.scopes.length && missing.length) {
      await setAccountStatus(ctx, a.id, 'needs_reauth',
        `TikTok no longer grants ${missing.join(', ')} to this account's token. Fix: reconnect the account (/connect/tiktok) and approve every requested permission.`);
    }
  }

  /** Held replies of active accounts: after a reconnect, once their kept webhooks are processed. */
  async function releaseHeld(): Promise<void> {
    heldWaiting = false;
    const rows = await ctx.database.db.selectFrom('messages').innerJoin('accounts', 'accounts.id', 'messages.account_id')
      .select(['messages.account_id']).distinct()
      .where(isPending('messages')).where('messages.status', '=', 'held').where('messages.direction', '=', 'outbound').where('accounts.status', '=', 'active').execute();
    for (const { account_id } of rows) {
      const acct = await getAccount(ctx.database.db, account_id);
      if (await hasUnprocessedInbound(ctx.database.db, acct.provider, acct.external_id)) { heldWaiting = true; continue; }
      const appended = await ctx.database.db.transaction().execute(async (tx) => {
        const fresh = await getAccount(tx, account_id);
        if (fresh.status !== 'active') return null;
        const events = await releaseHeldReplies(ctx, tx, fresh, ctx.clock(), { inboundPending: false });
        return tally(await appendEvents(tx, events, ctx.clock()));
      });
      if (appended?.events) {
        ctx.bus.notify('outbound', account_id);
        announceEvents(ctx.bus, appended);
      }
    }
  }

  const offAccounts = ctx.bus.on('accounts', () => void wake());
  // Held webhooks being processed may be what releases held replies.
  setImmediate(() => void wake());
  return {
    async runOnce() {
      await wake();
      while (running) await running;
    },
    async stop() {
      stopped = true;
      offAccounts();
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
