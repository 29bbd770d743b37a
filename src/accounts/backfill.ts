import { randomBytes } from 'node:crypto';
import type { AppContext } from '../context.js';
import { ApiError } from '../core/errors.js';
import { isPostgres, parseJson } from '../db/database.js';
import { releaseLease, tryAcquireLease } from '../db/leases.js';
import { announceEvents, appendEvents, tally } from '../events/outbox.js';
import type { EventInput } from '../events/types.js';
import { applyProviderEvent, postgresLookups } from '../ingest/apply.js';
import { fetchConversation, listConversationIds, type FetchedMessage, type Pace } from '../ingest/sync.js';
import { isUniqueViolation } from '../messaging/queue.js';
import { gateFor, type RateGate } from '../messaging/rate-gate.js';
import { classifyTiktokError } from '../providers/tiktok/errors.js';
import type { Worker } from '../runtime.js';
import { getAccount, hasUnprocessedInbound, queuedBackfill, type AccountRow, type BackfillState } from './store.js';

/**
 * Backfill: the conversations of the last `days` days (TikTok's STRANGER and SINGLE lists; TikTok
 * keeps 90 days) and their latest messages (TikTok gives 20 per conversation), stored through the
 * same code as webhooks. Idempotent: messages are unique per (account, provider message id), so a
 * second run stores nothing new. Messages older than `history_before` (the connect time) are
 * history: no message.received, no conversation.created. Newer ones are announced once, whether
 * the webhook or the backfill sees them first.
 *
 * A job lives in accounts.backfill (`queued` → `running` → `done` | `failed`) with its progress;
 * a lease per account makes one process run it; `startBackfillWorker` picks queued jobs up in
 * worker roles, and `dmgate accounts backfill` can run one in the foreground.
 */

const DAY_MS = 86_400_000;
const LEASE_MS = 60_000;
/** How long to wait for webhooks kept while disconnected to be processed before reading history. */
const INBOUND_WAIT_MS = 30_000;
const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 15000];
const SCAN_MS = 5000;
const MAX_CONCURRENT = 4;

export const leaseName = (accountId: string) => `backfill:${accountId}`;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function backfillState(acct: Pick<AccountRow, 'backfill'>): BackfillState | null {
  return parseJson<BackfillState | null>(acct.backfill, null);
}

function accountError(acct: AccountRow): ApiError {
  const details = { account_id: acct.id, status: acct.status };
  if (acct.status === 'restricted') return new ApiError('account_restricted', acct.status_reason ?? 'this account cannot use the messaging API', details);
  if (acct.status === 'disconnected') return new ApiError('account_disconnected', 'the account is disconnected; connect it again before a backfill', { ...details, reconnect_url: '/connect/tiktok' });
  return new ApiError('account_needs_reauth', acct.status_reason ?? 'the account must be reconnected before a backfill', { ...details, reconnect_url: '/connect/tiktok' });
}

/**
 * Queues a backfill (POST /v1/accounts/{id}/backfill, the CLI). A job already queued or running is
 * left as it is. History stays what it was at connect time: a re-run announces nothing old.
 */
export async function requestBackfill(ctx: AppContext, accountId: string, days?: number): Promise<BackfillState> {
  const acct = await getAccount(ctx.database.db, accountId);
  if (acct.status !== 'active') throw accountError(acct);
  const current = backfillState(acct);
  if (current && (current.status === 'queued' || current.status === 'running')) return current;
  const now = ctx.clock();
  const historyBefore = current?.history_before ? Date.parse(current.history_before) : now;
  const state = queuedBackfill(now, days ?? (ctx.config.backfillDays || 90), Number.isFinite(historyBefore) ? historyBefore : now);
  await ctx.database.db.updateTable('accounts').set({ backfill: JSON.stringify(state) }).where('id', '=', accountId).execute();
  ctx.bus.notify('accounts', accountId);
  return state;
}

export interface RunOptions {
  /** Called after every step (for the CLI's progress bar). */
  onProgress?: (state: BackfillState) => void;
  /** Checked between steps: a stopping worker hands the job back as `queued` (the next one resumes it). */
  stopping?: () => boolean;
}

/**
 * Runs the account's backfill here if no other process does (the lease). Returns the final state,
 * or null when another process holds the job.
 */
export async function runBackfill(ctx: AppContext, accountId: string, opts: RunOptions = {}): Promise<BackfillState | null> {
  const owner = `backfill:${process.pid}:${randomBytes(4).toString('hex')}`;
  if (!(await tryAcquireLease(ctx.database, leaseName(accountId), owner, LEASE_MS, ctx.clock()))) return null;
  const stopping = opts.stopping ?? (() => false);
  const now = ctx.clock();
  let acct: AccountRow | null = null;
  let state: BackfillState = queuedBackfill(now, ctx.config.backfillDays || 90, now);
  const save = async () => {
    await ctx.database.db.updateTable('accounts').set({ backfill: JSON.stringify(state) }).where('id', '=', accountId).execute();
    opts.onProgress?.(state);
  };
  try {
    acct = await getAccount(ctx.database.db, accountId);
    const stored = backfillState(acct);
    // Finished meanwhile (by another process): nothing to do until someone asks again.
    if (stored && (stored.status === 'done' || stored.status === 'failed')) return stored;
    state = stored ?? state;
    if (acct.status !== 'active') throw accountError(acct);
    // Webhooks kept while the account was disconnected go first: they are news, not history.
    const waitUntil = Date.now() + INBOUND_WAIT_MS;
    while (Date.now() < waitUntil && !stopping() && await hasUnprocessedInbound(ctx.database.db, acct.provider, acct.external_id)) await sleep(100);

    acct = await getAccount(ctx.database.db, accountId);
    const historyBefore = Date.parse(state.history_before);
    state = { ...state, status: 'running', conversations_done: 0, conversations_total: null, messages: 0, started_at: new Date(ctx.clock()).toISOString(), finished_at: null, error: null };
    await save();
    ctx.log.info({ account_id: accountId, days: state.days }, 'backfill started');

    const pace = idleSlot(gateFor(ctx, accountId), stopping);
    const floor = ctx.clock() - state.days * DAY_MS;
    const account = acct;
    const ids = await retrying(ctx, accountId, stopping, () => listConversationIds(ctx, account, floor, pace));
    state = { ...state, conversations_total: ids.length };
    await save();

    for (const conversationId of ids) {
      if (stopping()) throw new Stopping();
      if (!(await tryAcquireLease(ctx.database, leaseName(accountId), owner, LEASE_MS, ctx.clock()))) {
        ctx.log.warn({ account_id: accountId }, 'backfill: another process took the job over');
        return null;
      }
      const fetched = await retrying(ctx, accountId, stopping, () => fetchConversation(ctx, account, conversationId, historyBefore, pace));
      const added = await applyConversation(ctx, account, fetched);
      state = { ...state, conversations_done: state.conversations_done + 1, messages: state.messages + added };
      await save();
    }
    state = { ...state, status: 'done', finished_at: new Date(ctx.clock()).toISOString() };
    await save();
    ctx.log.info({ account_id: accountId, conversations: state.conversations_done, messages: state.messages }, 'backfill done');
    return state;
  } catch (err) {
    if (err instanceof Stopping) {
      // Handed back: the next worker to start resumes it.
      state = { ...state, status: 'queued', started_at: null };
      await save().catch(() => undefined);
      return state;
    }
    const message = err instanceof Error ? err.message : String(err);
    state = { ...state, status: 'failed', finished_at: new Date(ctx.clock()).toISOString(), error: message };
    await save().catch(() => undefined);
    ctx.log.warn({ account_id: accountId, error: message }, 'backfill failed; re-run it with POST /v1/accounts/{id}/backfill or "dmgate accounts backfill"');
    return state;
  } finally {
    await releaseLease(ctx.database, leaseName(accountId), owner).catch(() => undefined);
  }
}

/**
 * Backfill uses the account's rate budget (the sender's gate) only when replies leave it idle:
 * it never books a slot ahead, so a reply waits at most one slot behind history. It waits at
 * most a few seconds for idle capacity, so a busy account still makes progress. Each call
 * reports its end to the gate, which counts it until then.
 */
const MAX_YIELD_MS = 5000;
function idleSlot(gate: RateGate, stopping: () => boolean): Pace {
  return async (call) => {
    const until = Date.now() + MAX_YIELD_MS;
    while (gate.delay() > 0 && Date.now() < until) {
      if (stopping()) throw new Stopping();
      await sleep(Math.min(gate.delay(), 250) + 1);
    }
    const release = await gate.fire(gate.reserve());
    try {
      return await call();
    } finally {
      release();
    }
  };
}

/** The worker is stopping: the job goes back to `queued`. */
class Stopping extends Error {}

/** Transient TikTok failures (network, 5xxxx, 40100 throttling) are retried with backoff. */
async function retrying<T>(ctx: AppContext, accountId: string, stopping: () => boolean, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof ApiError || err instanceof Stopping || classifyTiktokError(err) !== 'retry' || attempt >= RETRY_DELAYS_MS.length) throw err;
      if (stopping()) throw new Stopping();
      ctx.log.warn({ account_id: accountId, attempt: attempt + 1, retry_in_s: RETRY_DELAYS_MS[attempt] / 1000, error: err instanceof Error ? err.message : String(err) },
        'backfill: TikTok call failed; retrying');
      await sleep(RETRY_DELAYS_MS[attempt]);
    }
  }
}

/** Stores one conversation's messages in one transaction; returns how many were new. */
async function applyConversation(ctx: AppContext, acct: AccountRow, fetched: FetchedMessage[]): Promise<number> {
  const providerIds = fetched.flatMap((f) => (f.event.kind === 'customer_message' || f.event.kind === 'business_message' ? [f.event.message.providerMessageId] : []));
  if (!providerIds.length) return 0;
  const count = async (db: Parameters<typeof applyProviderEvent>[0]) => (isPostgres(db)
    ? (await postgresLookups.messagesStored(acct.id, [...new Set(providerIds)]).execute(db)).rows[0].n
    : Number((await db.selectFrom('messages').select((eb) => eb.fn.countAll<number>().as('n'))
      .where('account_id', '=', acct.id).where('provider_message_id', 'in', providerIds).executeTakeFirstOrThrow()).n));
  for (let attempt = 0; ; attempt++) {
    try {
      let added = 0;
      let appended = { events: 0, deliveries: 0 };
      await ctx.database.db.transaction().execute(async (tx) => {
        const now = ctx.clock();
        const before = await count(tx);
        const events: EventInput[] = [];
        for (const f of fetched) {
          const out = await applyProviderEvent(tx, acct, f.event, now, { historical: !f.recent });
          // The echo of a reply still being sent: the sender (or its webhook) records it.
          if ('defer' in out) continue;
          events.push(...out.events);
        }
        added = (await count(tx)) - before;
        appended = tally(await appendEvents(tx, events, now));
      });
      announceEvents(ctx.bus, appended);
      return added;
    } catch (err) {
      // A webhook created the same contact or conversation at the same moment: apply again.
      if (attempt < 3 && isUniqueViolation(err)) continue;
      throw err;
    }
  }
}

/**
 * Worker roles run queued backfills (and resume ones whose process died: their lease lapses).
 * Wakes on the bus ('accounts') and scans every few seconds.
 */
export function startBackfillWorker(ctx: AppContext): Worker {
  let stopped = false;
  const active = new Map<string, Promise<unknown>>();
  let scanning: Promise<void> | null = null;
  let again = false;

  const scan = () => {
    if (stopped) return;
    if (scanning) { again = true; return; }
    scanning = (async () => {
      const rows = await ctx.database.db.selectFrom('accounts').select(['id', 'status', 'backfill']).where('backfill', 'is not', null).execute();
      for (const r of rows) {
        if (active.size >= MAX_CONCURRENT) break;
        const s = backfillState(r);
        if (r.status !== 'active' || !s || (s.status !== 'queued' && s.status !== 'running') || active.has(r.id)) continue;
        let ran = false;
        const job = runBackfill(ctx, r.id, { stopping: () => stopped })
          .then((state) => { ran = state !== null; })
          .catch((err) => ctx.log.error({ err, account_id: r.id }, 'backfill crashed'))
          .finally(() => {
            active.delete(r.id);
            if (ran) scan(); // a request that came in while it finished
          });
        active.set(r.id, job);
      }
    })().catch((err) => ctx.log.error({ err }, 'backfill scan failed')).finally(() => {
      scanning = null;
      if (again) { again = false; scan(); }
    });
  };

  const off = ctx.bus.on('accounts', scan);
  const timer = setInterval(scan, SCAN_MS);
  timer.unref();
  setImmediate(scan);
  return {
    async stop() {
      stopped = true;
      off();
      clearInterval(timer);
      await scanning;
      await Promise.all(active.values());
    },
  };
}
