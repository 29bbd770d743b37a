import { randomBytes } from 'node:crypto';
import type { AppContext } from '../context.js';
import { transaction, type Executor } from '../db/database.js';
import { inIndexOrder } from '../db/index-order.js';
import { releaseLease, tryAcquireLease } from '../db/leases.js';
import { announceEvents, appendEvents, tally } from '../events/outbox.js';
import type { EventInput } from '../events/types.js';
import { decodeTiktokWebhook, type TiktokEnvelope } from '../providers/tiktok/webhook-events.js';
import type { ProviderEvent } from '../providers/types.js';
import type { AccountRow } from '../accounts/store.js';
import { applyProviderEvent, preloadBatch, type BatchKeys } from './apply.js';
import { inboundPending } from './inbound-log.js';
import { fetchRecentMessages } from './sync.js';
import { gateFor, paced } from '../messaging/rate-gate.js';
import type { Worker } from '../runtime.js';
import { parseTiktokJson } from '../providers/tiktok/json.js';

const BATCH = 100;
/**
 * While ingress is busy the processor runs a small duty cycle (a short batch, then a pause), so
 * acknowledging keeps most of the CPU during a burst, yet up to ~1,000 webhooks/s are still
 * processed and nothing starves.
 */
const PRESSURED_BATCH = 50;
const PRESSURED_PAUSE_MS = 50;
const MAX_ATTEMPTS = 10;
const DEFER_MS = 500;
const LEASE_MS = 15000;

interface StoredRow { seq: number; business_id: string | null; body: string; attempts: number; event_type: string }
/** A stored webhook with its provider events, decoded once per batch. */
interface Row extends StoredRow { events: ProviderEvent[] }
type Decision = { status: 'processed' | 'ignored' | 'held'; error?: string } | { defer: string };

/**
 * The next webhooks to process, in arrival order (through inbound_events_due), but those of the
 * businesses in `busy` (an EEA read in flight: theirs wait for it, in order).
 */
export const dueInboundEvents = (db: Executor, now: number, limit: number, busy: string[] = []) => {
  let q = db.selectFrom('inbound_events').select(['seq', 'business_id', 'body', 'attempts', 'event_type'])
    .where(inboundPending()).where('next_attempt_at', '<=', now);
  if (busy.length) q = q.where((eb) => eb.or([eb('business_id', 'is', null), eb('business_id', 'not in', busy)]));
  return q.orderBy('seq').limit(limit);
};

/**
 * Turns stored webhooks into conversations, messages and events, in arrival order (each business's:
 * an EEA webhook's read of TikTok runs beside the others, see processBatch). One processor works at
 * a time (a lease on Postgres), which keeps every conversation's events in order; each batch commits
 * its rows' effects, their events and deliveries, and their processed marks together.
 */
export function startProcessor(ctx: AppContext): Worker {
  const owner = `processor:${process.pid}:${randomBytes(4).toString('hex')}`;
  let stopped = false;
  let running: Promise<void> | null = null;
  let again = false;
  let timer: NodeJS.Timeout | null = null;
  let leasedAt = -Infinity;

  const wake = () => {
    if (stopped) return;
    if (running) { again = true; return; }
    running = runUntilIdle().catch((err) => ctx.log.error({ err }, 'inbound processing failed')).finally(() => {
      running = null;
      if (again) { again = false; wake(); }
    });
  };

  const syncs = new SyncRunner(ctx, wake);

  async function runUntilIdle(): Promise<void> {
    if (ctx.database.dialect === 'postgres' && ctx.clock() - leasedAt > LEASE_MS / 3) {
      if (!(await tryAcquireLease(ctx.database, 'ingest-processor', owner, LEASE_MS, ctx.clock()))) return;
      leasedAt = ctx.clock();
    }
    while (!stopped) {
      // Yield to I/O before every batch: on SQLite each query is synchronous underneath, so without
      // a macrotask boundary a large backlog would be drained without serving a single webhook.
      await new Promise((r) => setImmediate(r));
      const pressured = ctx.pressure.busy;
      if (pressured) await new Promise((r) => setTimeout(r, PRESSURED_PAUSE_MS));
      const limit = pressured ? PRESSURED_BATCH : BATCH;
      const now = ctx.clock();
      const rows = await inIndexOrder(ctx.database, (db) => dueInboundEvents(db, now, limit, syncs.businesses()).execute());
      if (!rows.length) return;
      // (Nothing taken: every row waits for its business's read, which wakes the processor when done.)
      if (!(await processBatch(ctx, rows, syncs))) return;
      if (ctx.database.dialect === 'postgres' && ctx.clock() - leasedAt > LEASE_MS / 3) {
        if (!(await tryAcquireLease(ctx.database, 'ingest-processor', owner, LEASE_MS, ctx.clock()))) return;
        leasedAt = ctx.clock();
      }
      if (rows.length < limit) return;
    }
  }

  const off = ctx.bus.on('inbound', wake);
  const offAccounts = ctx.bus.on('accounts', wake);
  timer = setInterval(wake, ctx.config.pollIntervalMs);
  timer.unref();
  setImmediate(wake);
  return {
    async stop() {
      stopped = true;
      off(); offAccounts();
      if (timer) clearInterval(timer);
      await running;
      await syncs.idle();
      // Given back at once: a worker started in this one's place (a rolling restart) would otherwise
      // leave DMs unprocessed until the lease ran out.
      if (ctx.database.dialect === 'postgres' && leasedAt > -Infinity) await releaseLease(ctx.database, 'ingest-processor', owner).catch(() => undefined);
    },
  };
}

async function loadAccounts(ctx: AppContext, rows: Row[]): Promise<Map<string, AccountRow>> {
  const ids = [...new Set(rows.map((r) => r.business_id).filter((x): x is string => Boolean(x)))];
  if (!ids.length) return new Map();
  const accts = await ctx.database.db.selectFrom('accounts').selectAll().where('provider', '=', 'tiktok').where('external_id', 'in', ids).execute();
  return new Map(accts.map((a) => [a.external_id, a]));
}

function decode(row: StoredRow): ProviderEvent[] {
  try {
    return decodeTiktokWebhook(parseTiktokJson(row.body) as TiktokEnvelope);
  } catch {
    return [{ kind: 'ignored', businessId: row.business_id, reason: 'stored body is not JSON' }];
  }
}

/**
 * Applies a batch in arrival order; returns whether it took any row. An EEA webhook (no content:
 * TikTok's lists must be read, in the account's rate slots, which takes seconds in a burst) starts
 * a read beside the processor, with the business's other EEA webhooks that follow it in the batch;
 * meanwhile the processor goes on with the other businesses, and the business's later webhooks
 * wait for the read (SyncRunner), so each business's events keep their order.
 */
async function processBatch(ctx: AppContext, stored: StoredRow[], syncs: SyncRunner): Promise<boolean> {
  const rows: Row[] = stored.map((r) => ({ ...r, events: decode(r) }));
  const accounts = await loadAccounts(ctx, rows);
  const taken = new Set<number>();
  let group: Row[] = [];
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i];
    if (taken.has(row.seq) || syncs.busy(row.business_id)) continue;
    taken.add(row.seq);
    if (!needsSync(row)) {
      group.push(row);
      continue;
    }
    // What arrived before it is applied first; then one read covers this business's EEA webhooks
    // up to its next other one (each read every conversation updated lately: a burst of N, read
    // one by one, cost N² paced calls).
    await commitGroup(ctx, group, accounts);
    group = [];
    const same = [row];
    for (const r of rows.slice(i + 1)) {
      if (r.business_id !== row.business_id) continue;
      if (!needsSync(r)) break;
      same.push(r);
      taken.add(r.seq);
    }
    syncs.start(same, accounts);
  }
  await commitGroup(ctx, group, accounts);
  return taken.size > 0;
}

/** The EEA reads in flight, at most one per business (see processBatch). */
class SyncRunner {
  private readonly running = new Map<string, Promise<void>>();

  constructor(private readonly ctx: AppContext, private readonly ended: () => void) {}

  busy(businessId: string | null): boolean {
    return this.running.has(businessId ?? '');
  }

  businesses(): string[] {
    return [...this.running.keys()];
  }

  start(rows: Row[], accounts: Map<string, AccountRow>): void {
    const key = rows[0].business_id ?? '';
    this.running.set(key, processSync(this.ctx, rows, accounts)
      .catch((err) => this.ctx.log.error({ err }, 'EEA read failed'))
      .finally(() => {
        this.running.delete(key);
        this.ended();
      }));
  }

  async idle(): Promise<void> {
    await Promise.all(this.running.values());
  }
}

const needsSync = (row: Row) => row.events.some((e) => e.kind === 'sync_needed');

function precheck(row: Row, accounts: Map<string, AccountRow>): Decision | AccountRow {
  const account = row.business_id ? accounts.get(row.business_id) : undefined;
  if (!account) return { status: 'ignored', error: 'no connected account for this business' };
  // A disconnected account's webhooks are kept and replayed when it reconnects.
  if (account.status === 'disconnected') return { status: 'held' };
  return account;
}

async function commitGroup(ctx: AppContext, rows: Row[], accounts: Map<string, AccountRow>): Promise<void> {
  if (!rows.length) return;
  try {
    await applyRows(ctx, rows, accounts);
  } catch (err) {
    if (rows.length === 1) { await recordFailure(ctx, rows[0], err); return; }
    // One bad row must not hold back the others: retry them one by one.
    for (const row of rows) {
      try { await applyRows(ctx, [row], accounts); } catch (e) { await recordFailure(ctx, row, e); }
    }
  }
}

/** The contacts and conversations a batch touches, per account, for one preload. */
function batchKeys(rows: Row[], accounts: Map<string, AccountRow>): BatchKeys[] {
  const byAccount = new Map<string, BatchKeys>();
  for (const row of rows) {
    const account = row.business_id ? accounts.get(row.business_id) : undefined;
    if (!account) continue;
    for (const ev of row.events) {
      if (!('conversationId' in ev)) continue;
      let k = byAccount.get(account.id);
      if (!k) byAccount.set(account.id, (k = { provider: account.provider, accountId: account.id, conversationIds: new Set(), customerIds: new Set() }));
      k.conversationIds.add(ev.conversationId);
      if ('customer' in ev && ev.customer) k.customerIds.add(ev.customer.externalId);
    }
  }
  return [...byAccount.values()];
}

async function applyRows(ctx: AppContext, rows: Row[], accounts: Map<string, AccountRow>): Promise<void> {
  const now = ctx.clock();
  let appended = { events: 0, deliveries: 0 };
  await transaction(ctx.database.db, async (tx) => {
    const preloaded = await preloadBatch(tx, ctx.database.dialect === 'postgres', batchKeys(rows, accounts));
    const events: EventInput[] = [];
    const done = new Map<string, { status: 'processed' | 'ignored' | 'held'; error: string | null; seqs: number[] }>();
    for (const row of rows) {
      const pre = precheck(row, accounts);
      let decision: Decision;
      const rowEvents: EventInput[] = [];
      if ('id' in pre) {
        decision = { status: 'processed' };
        for (const ev of row.events) {
          if (ev.kind === 'ignored') { decision = { status: 'ignored', error: ev.reason }; continue; }
          const out = await applyProviderEvent(tx, pre, ev, now, { attempts: row.attempts, rows: preloaded, byWebhook: true });
          if ('defer' in out) { decision = out; break; }
          rowEvents.push(...out.events);
        }
      } else {
        decision = pre;
      }
      if ('defer' in decision) {
        await tx.updateTable('inbound_events').set({ attempts: row.attempts + 1, next_attempt_at: now + DEFER_MS, error: decision.defer }).where('seq', '=', row.seq).execute();
        continue;
      }
      events.push(...rowEvents);
      const key = `${decision.status}|${decision.error ?? ''}`;
      const group = done.get(key) ?? { status: decision.status, error: decision.error ?? null, seqs: [] };
      group.seqs.push(row.seq);
      done.set(key, group);
    }
    for (const g of done.values()) {
      await tx.updateTable('inbound_events').set({ status: g.status, error: g.error, processed_at: now }).where('seq', 'in', g.seqs).execute();
    }
    // Last: on Postgres it holds the event-append lock until commit (events/outbox.ts).
    appended = tally(await appendEvents(tx, events, now));
  });
  announceEvents(ctx.bus, appended);
}

async function recordFailure(ctx: AppContext, row: Row, err: unknown): Promise<void> {
  const attempts = row.attempts + 1;
  const failed = attempts >= MAX_ATTEMPTS;
  ctx.log.error({ err, seq: row.seq, event: row.event_type, attempts }, failed ? 'inbound event failed for good' : 'inbound event failed; will retry');
  await ctx.database.db.updateTable('inbound_events').set({
    attempts, status: failed ? 'failed' : 'pending', error: err instanceof Error ? err.message.slice(0, 500) : String(err),
    next_attempt_at: ctx.clock() + Math.min(60000, 1000 * 2 ** attempts),
  }).where('seq', '=', row.seq).execute();
}

/**
 * TikTok's EEA events carry no content (nor a conversation): read the conversations updated since
 * the earliest of them through the API, then apply; `rows` are one business's, marked together.
 */
async function processSync(ctx: AppContext, rows: Row[], accounts: Map<string, AccountRow>): Promise<void> {
  const seqs = rows.map((r) => r.seq);
  const pre = precheck(rows[0], accounts);
  if (!('id' in pre)) {
    const d = pre as Extract<Decision, { status: string }>;
    await ctx.database.db.updateTable('inbound_events').set({ status: d.status, error: d.error ?? null, processed_at: ctx.clock() }).where('seq', 'in', seqs).execute();
    return;
  }
  try {
    const since = Math.min(...rows.flatMap((r) => r.events.map((e) => (e.kind === 'sync_needed' ? e.sinceMs : Infinity))));
    // In the account's rate slots, with its sends: TikTok counts these reads against the same limit.
    const gate = gateFor(ctx, pre.id);
    const fetched = await fetchRecentMessages(ctx, pre, since, (call) => paced(gate, call));
    const now = ctx.clock();
    let appended = { events: 0, deliveries: 0 };
    await transaction(ctx.database.db, async (tx) => {
      const out: EventInput[] = [];
      for (const f of fetched) {
        const res = await applyProviderEvent(tx, pre, f.event, now, { attempts: MAX_ATTEMPTS, historical: !f.recent });
        if ('events' in res) out.push(...res.events);
      }
      await tx.updateTable('inbound_events').set({ status: 'processed', error: null, processed_at: now }).where('seq', 'in', seqs).execute();
      appended = tally(await appendEvents(tx, out, now));
    });
    announceEvents(ctx.bus, appended);
  } catch (err) {
    for (const row of rows) await recordFailure(ctx, row, err);
  }
}
