import type { KeyObject } from 'node:crypto';
import { sql } from 'kysely';
import type { AppContext } from '../context.js';
import { databaseUnavailable, type Executor, type Tx } from '../db/database.js';
import { chunks } from '../core/chunks.js';
import { newId } from '../core/ids.js';
import { deliveryActive, deliveryPending } from './delivery-status.js';
import { HttpPoster, type PostResult } from './http-post.js';
import { decide, type Outcome } from './schedule.js';
import { signatureHeaders, signingKey } from './signing.js';

/**
 * The delivery worker: claims due deliveries from the database, POSTs each event's stored payload
 * to its endpoint (Standard Webhooks signature), and records the outcome.
 *
 * - Wakes at once on `bus 'deliveries'` (new events, retries, recoveries), on a timer for retries it
 *   scheduled itself, and on a poll tick (retries scheduled by other processes, crash recovery).
 * - Postgres: claims flip `pending` rows to `delivering` with a lease (`locked_until`) under
 *   FOR UPDATE SKIP LOCKED, so several processes share the table; leases that expire (a crashed
 *   process) are put back to `pending` on the poll tick.
 * - SQLite has exactly one serving process, so a claim is only remembered in memory (`held`): the
 *   row stays `pending` while in flight and the claim costs no write (no fsync). A crash loses
 *   nothing: the row is still `pending` and is delivered again after restart (at least once).
 * - Isolation: at most `deliveryConcurrency` requests in flight, at most `deliveryPerEndpoint` per
 *   endpoint (per process): endpoints at their cap are left out of the claim, so a hanging
 *   endpoint holds only its own slots.
 * - Ordered endpoints: only the oldest undelivered event (lowest event_seq) of one conversation
 *   may be claimed; the claim query checks it, so it holds across processes too.
 * - Outcomes are written in batches (one transaction per flush, successes in bulk updates).
 */
export interface DeliveryWorker { stop(): Promise<void> }

interface Claimed {
  id: string;
  event_id: string;
  endpoint_id: string;
  attempts: number;
  ordered: number;
  url: string;
  secret_enc: string;
  previous_secret_enc: string | null;
  previous_secret_until: number | null;
  payload: string;
}

interface Completion {
  row: Claimed;
  attemptedAt: number;
  result: PostResult;
  outcome: Outcome;
}

const LEASE_MARGIN_MS = 10_000;
const CLAIM_MAX = 500;
const STOP_GRACE_MS = 2_000;
const LEASE_SWEEP_EVERY_MS = 2_000;
const FLUSH_RETRY_MS = 500;
/** Outcomes finishing within this window share one transaction (one fsync). */
const FLUSH_DELAY_MS = 10;

/**
 * Due deliveries of enabled endpoints, oldest first (through deliveries_due); for an ordered
 * endpoint, only a conversation's oldest unfinished one (through deliveries_active_order).
 */
export const dueDeliveries = (db: Executor, now: number, limit: number) =>
  db.selectFrom('deliveries as d')
    .innerJoin('webhook_endpoints as e', 'e.id', 'd.endpoint_id')
    .select(['d.id', 'd.event_id', 'd.endpoint_id', 'd.attempts', 'e.ordered', 'e.url', 'e.secret_enc', 'e.previous_secret_enc', 'e.previous_secret_until'])
    .where(deliveryPending('d'))
    .where('d.next_attempt_at', '<=', now)
    .where('e.enabled', '=', 1)
    .where((eb) => eb.or([
      eb('e.ordered', '=', 0),
      eb('d.conversation_id', 'is', null),
      eb.not(eb.exists(
        eb.selectFrom('deliveries as p').select(sql<number>`1`.as('one'))
          .whereRef('p.endpoint_id', '=', 'd.endpoint_id')
          .whereRef('p.conversation_id', '=', 'd.conversation_id')
          .whereRef('p.event_seq', '<', 'd.event_seq')
          .where(deliveryActive('p')),
      )),
    ]))
    .orderBy('d.next_attempt_at').orderBy('d.event_seq')
    .limit(limit);

/** Puts deliveries whose lease expired back in the queue (through deliveries_active_order). */
export const expiredLeases = (db: Executor, now: number) =>
  db.updateTable('deliveries')
    .set({ status: 'pending', locked_until: null, next_attempt_at: now, updated_at: now })
    .where(deliveryActive()).where('status', '=', 'delivering').where('locked_until', '<', now);

export function startDeliveryWorker(ctx: AppContext): DeliveryWorker {
  const worker = new Worker(ctx);
  worker.start();
  return { stop: () => worker.stop() };
}

class Worker {
  private readonly db;
  private readonly pg: boolean;
  private readonly poster = new HttpPoster();
  private readonly keys = new Map<string, KeyObject>();
  private readonly perEndpoint = new Map<string, number>();
  /** Deliveries claimed by this process whose outcome is not yet recorded. */
  private readonly held = new Set<string>();
  /** The status a claimed row has in the table while in flight. */
  private readonly inFlightStatus: 'delivering' | 'pending';
  private readonly active = new Map<string, { controller: AbortController; done: Promise<void> }>();
  private inflight = 0;
  private stopped = false;
  private filling: Promise<void> | null = null;
  private dirty = false;
  private completions: Completion[] = [];
  private releases: string[] = [];
  private flushing: Promise<void> | null = null;
  private flushScheduled = false;
  private flushFailed = false;
  private wakeTimer: NodeJS.Timeout | null = null;
  private wakeAt = Infinity;
  private pollTimer: NodeJS.Timeout | null = null;
  private lastSweep = 0;
  private unsubscribe: (() => void) | null = null;

  constructor(private readonly ctx: AppContext) {
    this.db = ctx.database.db;
    this.pg = ctx.database.dialect === 'postgres';
    this.inFlightStatus = this.pg ? 'delivering' : 'pending';
  }

  start(): void {
    this.unsubscribe = this.ctx.bus.on('deliveries', () => this.kick());
    this.pollTimer = setInterval(() => this.tick(), this.ctx.config.pollIntervalMs);
    this.pollTimer.unref();
    // SQLite has one serving process, so whatever is `delivering` at start was orphaned by a crash.
    this.lastSweep = this.ctx.clock();
    void this.sweepLeases(this.ctx.database.dialect === 'sqlite' ? Number.MAX_SAFE_INTEGER : this.lastSweep).finally(() => this.kick());
  }

  private tick(): void {
    if (this.stopped) return;
    const now = this.ctx.clock();
    if (now - this.lastSweep >= LEASE_SWEEP_EVERY_MS) {
      this.lastSweep = now;
      void this.sweepLeases(now).finally(() => this.kick());
      return;
    }
    this.kick();
  }

  /** Puts deliveries whose lease expired (their process died mid-request) back in the queue. */
  private async sweepLeases(now: number): Promise<void> {
    const mine = [...this.held];
    try {
      let q = expiredLeases(this.db, now);
      if (mine.length) q = q.where('id', 'not in', mine);
      await q.execute();
    } catch (err) {
      this.ctx.log.warn({ err }, 'delivery lease sweep failed');
    }
  }

  private kickTimer: NodeJS.Timeout | null = null;
  private kickSoon(): void {
    if (this.kickTimer || this.stopped) return;
    this.kickTimer = setTimeout(() => { this.kickTimer = null; this.kick(); }, 1);
  }

  /** Asks for a claim round; coalesces while one runs. */
  kick(): void {
    if (this.stopped) return;
    this.dirty = true;
    if (this.filling) return;
    this.filling = (async () => {
      try {
        while (this.dirty && !this.stopped) {
          this.dirty = false;
          await this.claimRound();
        }
      } catch (err) {
        this.ctx.log.error({ err }, 'delivery claim failed');
      } finally {
        this.filling = null;
      }
    })();
  }

  /**
   * Claims until capacity is used or nothing due is left. Work left behind because of the global
   * limit or an endpoint's cap is picked up when a slot frees (see `launch`).
   */
  private async claimRound(): Promise<void> {
    const { deliveryConcurrency, deliveryPerEndpoint } = this.ctx.config;
    for (let round = 0; round < 8 && !this.stopped; round++) {
      const free = deliveryConcurrency - this.inflight;
      if (free <= 0) return;
      const saturated = [...this.perEndpoint].filter(([, n]) => n >= deliveryPerEndpoint).map(([id]) => id);
      const limit = Math.min(free, CLAIM_MAX);
      const { claimed, fetched } = await this.claim(limit, saturated);
      for (const row of claimed) this.launch(row);
      if (!claimed.length) return;
      // Saw every due row: what was skipped waits for its endpoint's slot (launch kicks then).
      if (fetched < limit) return;
    }
    this.dirty = true;
  }

  private async claim(limit: number, saturated: string[]): Promise<{ claimed: Claimed[]; fetched: number }> {
    const now = this.ctx.clock();
    const cap = this.ctx.config.deliveryPerEndpoint;
    const lockedUntil = now + this.ctx.config.deliveryTimeoutMs + LEASE_MARGIN_MS;
    const run = async (db: Executor) => {
      let q = dueDeliveries(db, now, limit);
      if (saturated.length) q = q.where('d.endpoint_id', 'not in', saturated);
      if (this.pg) q = q.forUpdate('d').skipLocked();
      else if (this.held.size) q = q.where('d.id', 'not in', [...this.held]);
      const candidates = await q.execute();
      const taken = new Map<string, number>();
      const chosen: typeof candidates = [];
      for (const c of candidates) {
        const used = (this.perEndpoint.get(c.endpoint_id) ?? 0) + (taken.get(c.endpoint_id) ?? 0);
        if (used >= cap) continue; // the endpoint's cap: left for when one of its slots frees
        taken.set(c.endpoint_id, (taken.get(c.endpoint_id) ?? 0) + 1);
        chosen.push(c);
      }
      if (!chosen.length) return { rows: [] as typeof candidates, fetched: candidates.length };
      if (!this.pg) return { rows: chosen, fetched: candidates.length };
      const updated = await db.updateTable('deliveries')
        .set({ status: 'delivering', locked_until: lockedUntil, updated_at: now })
        .where('id', 'in', chosen.map((c) => c.id))
        .where('status', '=', 'pending')
        .returning('id')
        .execute();
      const ok = new Set(updated.map((u) => u.id));
      return { rows: chosen.filter((c) => ok.has(c.id)), fetched: candidates.length };
    };
    const { rows, fetched } = this.pg ? await this.db.transaction().execute((tx) => run(tx)) : await run(this.db);
    if (!rows.length) return { claimed: [], fetched };
    for (const r of rows) this.held.add(r.id);
    const eventIds = [...new Set(rows.map((r) => r.event_id))];
    const payloads = new Map<string, string>();
    for (const ids of chunks(eventIds)) {
      const part = await this.db.selectFrom('events').select(['id', 'payload']).where('id', 'in', ids).execute();
      for (const p of part) payloads.set(p.id, p.payload);
    }
    const claimed: Claimed[] = [];
    const orphans: string[] = [];
    for (const r of rows) {
      const payload = payloads.get(r.event_id);
      if (payload === undefined) orphans.push(r.id);
      else claimed.push({ ...r, payload });
    }
    if (orphans.length) {
      for (const id of orphans) this.held.delete(id);
      await this.db.updateTable('deliveries').set({ status: 'failed', locked_until: null, last_error: 'event no longer exists', updated_at: now })
        .where('id', 'in', orphans).execute();
    }
    return { claimed, fetched };
  }

  private keyFor(secretEnc: string): KeyObject {
    let key = this.keys.get(secretEnc);
    if (!key) {
      if (this.keys.size > 1000) this.keys.clear();
      key = signingKey(this.ctx.box.open(secretEnc));
      this.keys.set(secretEnc, key);
    }
    return key;
  }

  private launch(row: Claimed): void {
    this.inflight++;
    this.perEndpoint.set(row.endpoint_id, (this.perEndpoint.get(row.endpoint_id) ?? 0) + 1);
    const controller = new AbortController();
    const done = this.attempt(row, controller.signal).finally(() => {
      const globalFull = this.inflight >= this.ctx.config.deliveryConcurrency;
      const before = this.perEndpoint.get(row.endpoint_id) ?? 1;
      this.inflight--;
      if (before <= 1) this.perEndpoint.delete(row.endpoint_id); else this.perEndpoint.set(row.endpoint_id, before - 1);
      this.active.delete(row.id);
      // A slot freed where the claim had to leave work behind: claim again (slots freed together share one claim).
      if (globalFull || before >= this.ctx.config.deliveryPerEndpoint) this.kickSoon();
    });
    this.active.set(row.id, { controller, done });
  }

  private async attempt(row: Claimed, signal: AbortSignal): Promise<void> {
    const attemptedAt = this.ctx.clock();
    let result: PostResult;
    try {
      const keys = [this.keyFor(row.secret_enc)];
      if (row.previous_secret_enc && (row.previous_secret_until ?? 0) > attemptedAt) keys.push(this.keyFor(row.previous_secret_enc));
      const headers = signatureHeaders(keys, row.event_id, Math.floor(attemptedAt / 1000), row.payload);
      result = await this.poster.post(row.url, row.payload, headers, {
        timeoutMs: this.ctx.config.deliveryTimeoutMs,
        allowPrivate: this.ctx.config.allowPrivateWebhooks,
        signal,
      });
    } catch (err) {
      result = { status: null, headers: {}, body: '', error: `cannot sign: ${(err as Error).message}`, latencyMs: 0 };
    }
    if (signal.aborted && this.stopped) {
      this.releases.push(row.id); // shutting down: give it back without counting an attempt
    } else {
      const outcome = decide(this.ctx.config.deliverySchedule, row.attempts + 1, result.status, result.headers['retry-after'], this.ctx.clock());
      this.completions.push({ row, attemptedAt, result, outcome });
    }
    this.scheduleFlush(FLUSH_DELAY_MS);
  }

  /** Outcomes are written together: whatever finishes within FLUSH_DELAY_MS shares one transaction. */
  private scheduleFlush(delayMs = 0): void {
    if (this.flushing || this.flushScheduled) return;
    this.flushScheduled = true;
    const run = () => {
      this.flushScheduled = false;
      this.flushing = this.flush().finally(() => {
        this.flushing = null;
        if (this.completions.length || this.releases.length) this.scheduleFlush(this.flushFailed ? FLUSH_RETRY_MS : 0);
      });
    };
    if (delayMs > 0) setTimeout(run, delayMs); else setImmediate(run);
  }

  /** Writes attempts and outcomes of finished requests in one transaction. */
  private async flush(): Promise<void> {
    let batch = this.completions;
    const releases = this.releases;
    this.completions = [];
    this.releases = [];
    if (!batch.length && !releases.length) return;
    const now = this.ctx.clock();
    try {
      await this.db.transaction().execute((tx) => this.write(tx, batch, releases, now));
      this.flushFailed = false;
    } catch (err) {
      if (databaseUnavailable(err) || batch.length === 0) {
        // Keep them for the next flush; if the process dies first, the leases expire and they are redelivered.
        this.ctx.log.error({ err }, 'recording delivery outcomes failed');
        this.keep(batch, releases);
        return;
      }
      // Some row could not be written: kept whole, the batch would fail again and again, holding
      // back every outcome in it. Each is written on its own instead.
      this.ctx.log.error({ err }, 'recording delivery outcomes failed; recording them one by one');
      const { left, dropped } = await this.writeEach(batch, now);
      if (dropped.length) this.kick(); // (given back to the claim loop)
      this.recorded(batch.filter((c) => !left.includes(c) && !dropped.includes(c)), []);
      if (left.length) { this.keep(left, releases); return; }
      batch = [];
      try {
        if (releases.length) await this.db.transaction().execute((tx) => this.write(tx, [], releases, now));
      } catch (releaseErr) {
        this.ctx.log.error({ err: releaseErr }, 'releasing deliveries failed');
        this.keep([], releases);
        return;
      }
      this.flushFailed = false;
    }
    this.recorded(batch, releases);
  }

  private keep(batch: Completion[], releases: string[]): void {
    this.completions.unshift(...batch);
    this.releases.unshift(...releases);
    this.flushFailed = true;
  }

  /**
   * Each outcome in a transaction of its own. One that still fails is written once more without
   * what the subscriber sent (its answer's body): the only part of a row that comes from outside.
   * If even that fails it is dropped with a log line: its delivery is made again (SQLite: it was
   * never marked; Postgres: its lease expires). `left`: what waits for the database to come back.
   */
  private async writeEach(batch: Completion[], now: number): Promise<{ left: Completion[]; dropped: Completion[] }> {
    const dropped: Completion[] = [];
    for (let i = 0; i < batch.length; i++) {
      const c = batch[i];
      const bare: Completion = { ...c, result: { ...c.result, body: '' } };
      let lastErr: unknown = null;
      for (const attempt of [c, bare]) {
        try {
          await this.db.transaction().execute((tx) => this.write(tx, [attempt], [], now));
          lastErr = null;
          break;
        } catch (err) {
          if (databaseUnavailable(err)) return { left: batch.slice(i), dropped };
          lastErr = err;
        }
      }
      if (lastErr) {
        this.ctx.log.error({ err: lastErr, delivery_id: c.row.id }, 'recording a delivery outcome failed; the delivery will be made again');
        this.held.delete(c.row.id);
        dropped.push(c);
      }
    }
    return { left: [], dropped };
  }

  private async write(tx: Tx, batch: Completion[], releases: string[], now: number): Promise<void> {
    if (batch.length) {
      // (Eight columns a row: 200 rows stay far under the parameter limits.)
      for (const part of chunks(batch, 200)) {
        await tx.insertInto('delivery_attempts').values(part.map((c) => ({
          id: newId('att', c.attemptedAt),
          delivery_id: c.row.id,
          endpoint_id: c.row.endpoint_id,
          attempted_at: c.attemptedAt,
          status_code: c.result.status,
          latency_ms: c.result.latencyMs,
          error: c.result.error ?? (c.outcome.kind === 'succeeded' ? null : `HTTP ${c.result.status}`),
          response_body: c.result.body || null,
        }))).execute();
      }
    }
    // Successes: one update per (status code, attempts) group.
    const groups = new Map<string, string[]>();
    for (const c of batch) {
      if (c.outcome.kind !== 'succeeded') continue;
      const k = `${c.result.status}:${c.row.attempts + 1}`;
      const list = groups.get(k) ?? [];
      list.push(c.row.id);
      groups.set(k, list);
    }
    for (const [k, ids] of groups) {
      const [code, attempts] = k.split(':').map(Number);
      for (const part of chunks(ids)) {
        await tx.updateTable('deliveries')
          .set({ status: 'succeeded', attempts, locked_until: null, last_status_code: code, last_error: null, updated_at: now })
          .where('id', 'in', part).where('status', '=', this.inFlightStatus).execute();
      }
    }
    for (const c of batch) {
      const o = c.outcome;
      if (o.kind === 'succeeded') continue;
      const error = c.result.error ?? `HTTP ${c.result.status}`;
      await tx.updateTable('deliveries').set({
        status: o.kind === 'retry' ? 'pending' : 'failed',
        attempts: c.row.attempts + 1,
        next_attempt_at: o.kind === 'retry' ? o.at : now,
        locked_until: null,
        last_status_code: c.result.status,
        last_error: error.slice(0, 500),
        updated_at: now,
      }).where('id', '=', c.row.id).where('status', '=', this.inFlightStatus).execute();
      if (o.kind === 'failed' && o.disableEndpoint) {
        await tx.updateTable('webhook_endpoints')
          .set({ enabled: 0, disabled_reason: `the endpoint answered 410 Gone on ${new Date(c.attemptedAt).toISOString()}`, updated_at: now })
          .where('id', '=', c.row.endpoint_id).execute();
      }
    }
    if (releases.length && this.pg) {
      await tx.updateTable('deliveries').set({ status: 'pending', locked_until: null, next_attempt_at: now, updated_at: now })
        .where('id', 'in', releases).where('status', '=', 'delivering').execute();
    }
  }

  /** After the outcomes are written (or given up): counters, retry timers, the claim loop. */
  private recorded(batch: Completion[], releases: string[]): void {
    for (const c of batch) {
      this.held.delete(c.row.id);
      this.ctx.metrics.deliveries.inc({ outcome: c.outcome.kind });
      if (c.result.status !== null) this.ctx.metrics.deliveryLatency.observe(c.result.latencyMs / 1000);
    }
    for (const id of releases) this.held.delete(id);
    let wake = false;
    for (const c of batch) {
      if (c.outcome.kind === 'retry') this.scheduleWake(c.outcome.at);
      if (c.row.ordered) wake = true; // the next event of that conversation may go now
      if (c.outcome.kind === 'failed' && c.outcome.disableEndpoint) this.ctx.bus.notify('endpoints');
    }
    if (releases.length) this.ctx.bus.notify('deliveries');
    if (wake) this.kick();
  }

  /** Wakes the claim loop when a retry this process scheduled falls due. */
  private scheduleWake(at: number): void {
    if (this.stopped || at >= this.wakeAt) return;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeAt = at;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = null;
      this.wakeAt = Infinity;
      this.kick();
    }, Math.min(Math.max(0, at - this.ctx.clock()) + 1, 3_600_000));
    this.wakeTimer.unref();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.unsubscribe?.();
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    if (this.kickTimer) clearTimeout(this.kickTimer);
    await this.filling?.catch(() => undefined);
    const pending = () => [...this.active.values()].map((a) => a.done);
    if (this.active.size) {
      const grace = Math.min(STOP_GRACE_MS, this.ctx.config.deliveryTimeoutMs);
      await Promise.race([Promise.allSettled(pending()), new Promise((r) => setTimeout(r, grace))]);
      for (const a of this.active.values()) a.controller.abort();
      await Promise.allSettled(pending());
    }
    await this.flushing;
    this.flushFailed = false;
    await this.flush();
    this.poster.close();
  }
}
