import { randomBytes } from 'node:crypto';
import type { AppContext } from '../context.js';
import { releaseLease } from '../db/leases.js';
import type { Worker } from '../runtime.js';
import { committerFor, type Committer } from './committer.js';
import { statusEvent } from './queue.js';
import { candidates, contactOf, dueAccounts, echoOf, staleSending, type Candidate, type TikTokSend } from './pending-replies.js';
import { Lane, leaseName } from './sender-lane.js';

/**
 * The sender: turns `queued` replies into TikTok sends.
 *
 * - Durable queue: the `messages` rows themselves (status, next_attempt_at). Memory only caches
 *   what the database says; a restart loses nothing.
 * - One lane per account. A lane paces every TikTok messaging call of its account through the
 *   account's RateGate (tiktokQps, sliding window), claims a reply just before its slot, and keeps
 *   at most one reply in flight per conversation: only the oldest pending reply of a conversation
 *   (its head) can be claimed, so a reply waiting for a retry holds back the ones after it.
 * - Lanes are independent (each has its own rate and its own loop), so a busy account never
 *   starves another; the database work of all lanes is group-committed (Committer).
 * - On PostgreSQL an account is leased to one process at a time (leases table), which keeps the
 *   per-account rate true across a fleet. SQLite runs a single process.
 * - Wakes on bus 'outbound' (the accept path names the account: no poll delay), on its own retry
 *   timers, and polls every pollIntervalMs for retries scheduled elsewhere and crash leftovers.
 *
 * Outcomes: sent (TikTok's message id and the send time; one `message.sent`), retried with backoff
 * (network, 5xxxx, 51065, 40100) while the window is open, failed with {code, message,
 * provider_code} (its quota given back), or held when the account needs reauthorization. Every
 * status change is one `message.status` event, in the same transaction as the change.
 */
export function startSender(ctx: AppContext): Worker {
  const sender = new Sender(ctx);
  sender.start();
  return { stop: () => sender.stop() };
}

/**
 * Claim a reply this long before its rate slot, so the claim's commit is done when the slot comes:
 * twice the recent claim latency, within these bounds.
 */
const MIN_CLAIM_LEAD_MS = 40;
const MAX_CLAIM_LEAD_MS = 1000;
/** A `sending` row untouched this long belongs to a process that died mid-send. */
const STALE_SENDING_MS = 120_000;
const SWEEP_EVERY_MS = 10_000;
/** Replies left `sending` whose fate is asked of TikTok per sweep (one paced call each), and for how long at most. */
const MAX_STALE_LOOKUPS = 20;
const STALE_LOOKUP_BUDGET_MS = 5_000;

export class Sender {
  readonly owner = `sender:${process.pid}:${randomBytes(4).toString('hex')}`;
  readonly committer: Committer;
  readonly pg: boolean;
  private readonly lanes = new Map<string, Lane>();
  stopped = false;
  private pollTimer: NodeJS.Timeout | null = null;
  private discovering: Promise<void> | null = null;
  private rediscover = false;
  private lastSweep = 0;
  private readonly offs: (() => void)[] = [];
  private claimLatency = 0;
  /** dmgate_provider_sends_total's series, one per outcome of an attempt. */
  readonly outcomes;

  constructor(readonly ctx: AppContext) {
    this.committer = committerFor(ctx);
    const sends = ctx.metrics.sends;
    this.outcomes = { sent: sends.labels('sent'), retry: sends.labels('retry'), failed: sends.labels('failed'), held: sends.labels('held') };
    this.pg = ctx.database.dialect === 'postgres';
  }

  start(): void {
    this.offs.push(this.ctx.bus.on('outbound', (accountId) => {
      if (accountId) this.lane(accountId).poke();
      else this.discover();
    }));
    this.offs.push(this.ctx.bus.on('accounts', () => {
      for (const lane of this.lanes.values()) lane.forgetToken();
      this.discover();
    }));
    this.pollTimer = setInterval(() => this.discover(), this.ctx.config.pollIntervalMs);
    this.pollTimer.unref();
    setImmediate(() => this.discover());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const off of this.offs) off();
    if (this.pollTimer) clearInterval(this.pollTimer);
    await this.discovering;
    await Promise.all([...this.lanes.values()].map((l) => l.stop()));
    await this.committer.idle();
    if (this.pg) await Promise.all([...this.lanes.keys()].map((id) => releaseLease(this.ctx.database, leaseName(id), this.owner).catch(() => undefined)));
  }

  /** Exponentially weighted recent claim latency (queueing in the committer and the commit). */
  recordClaimLatency(ms: number): void {
    this.claimLatency = this.claimLatency === 0 ? ms : this.claimLatency * 0.9 + ms * 0.1;
  }

  claimLeadMs(): number {
    return Math.min(MAX_CLAIM_LEAD_MS, Math.max(MIN_CLAIM_LEAD_MS, 2 * this.claimLatency));
  }

  lane(accountId: string): Lane {
    let lane = this.lanes.get(accountId);
    if (!lane) this.lanes.set(accountId, lane = new Lane(this, accountId));
    return lane;
  }

  dropLane(lane: Lane): void {
    if (this.lanes.get(lane.accountId) === lane) this.lanes.delete(lane.accountId);
  }

  /** Finds accounts with due replies (retries scheduled by others, restarts) and recovers crash leftovers. */
  discover(): void {
    if (this.stopped) return;
    if (this.discovering) { this.rediscover = true; return; }
    this.discovering = (async () => {
      const now = this.ctx.clock();
      const rows = await dueAccounts(this.ctx.database.db, now).execute();
      for (const r of rows) this.lane(r.account_id).due();
      if (Date.now() - this.lastSweep > SWEEP_EVERY_MS) {
        this.lastSweep = Date.now();
        await this.recoverStale();
        for (const lane of [...this.lanes.values()]) lane.reapIfIdle();
      }
    })().catch((err) => this.ctx.log.error({ err }, 'sender: discovery failed')).finally(() => {
      this.discovering = null;
      if (this.rediscover) { this.rediscover = false; this.discover(); }
    });
  }

  /**
   * A reply left `sending` by a process that died mid-call. When TikTok took it, its echo was
   * usually recorded meanwhile as a message of its own (apply.ts gives up waiting after 20 s): the
   * reply adopts it and is `sent`, not sent twice. Without a recorded echo (lost, or not delivered
   * yet) TikTok's own list of the conversation's latest messages is asked (askTikTok); only when
   * TikTok cannot tell is it queued again (at-least-once). Its conversation stays blocked until
   * then, so order holds.
   */
  private async recoverStale(): Promise<void> {
    const now = this.ctx.clock();
    const mine = [...this.lanes.values()].flatMap((l) => l.inflightIds());
    let q = staleSending(this.ctx.database.db, now - STALE_SENDING_MS);
    if (mine.length) q = q.where('id', 'not in', mine);
    const stale = await q.limit(500).execute();
    if (!stale.length) return;
    const adopted = new Set<string>();
    let unknown: (Candidate & { updated_at: number })[] = [];
    await this.committer.run(async (tx, events) => {
      // The committer replays an op on its own when its batch fails: count only the run that commits.
      adopted.clear();
      unknown = [];
      const rows = await candidates(tx).select('m.updated_at').where('m.id', 'in', stale.map((s) => s.id)).where('m.status', '=', 'sending').execute();
      for (const c of rows) {
        const echo = await echoOf(tx, c, c.updated_at);
        if (!echo) { unknown.push(c); continue; }
        await this.lane(c.account_id).sentCarefully(tx, events, c, echo.providerMessageId, echo.timestampMs);
        adopted.add(c.account_id);
      }
    });
    if (adopted.size) this.ctx.log.warn({ accounts: adopted.size }, 'sender: replies left in sending by a stopped process had reached TikTok (their echoes were recorded); marked sent');

    // Outside any transaction: TikTok calls, paced with the account's other calls, within a budget
    // (discovery waits for them). The rest wait for the next sweep.
    const asked: typeof unknown = [];
    const answers = new Map<string, TikTokSend | null | undefined>();
    const startedAt = Date.now();
    for (const c of unknown) {
      if (asked.length >= MAX_STALE_LOOKUPS || Date.now() - startedAt > STALE_LOOKUP_BUDGET_MS) break;
      const answer = await this.lane(c.account_id).askTikTok(c, c.updated_at);
      if (answer === 'elsewhere') continue;
      asked.push(c);
      answers.set(c.id, answer);
    }
    let requeued = 0;
    let found = 0;
    if (asked.length) {
      await this.committer.run(async (tx, events) => {
        requeued = 0;
        found = 0;
        const claimedAt = new Map(asked.map((c) => [c.id, c.updated_at]));
        const rows = await candidates(tx).select('m.updated_at').where('m.id', 'in', asked.map((c) => c.id)).where('m.status', '=', 'sending').execute();
        for (const c of rows) {
          if (c.updated_at !== claimedAt.get(c.id)) continue; // changed meanwhile: the next sweep looks again
          // An echo recorded while TikTok was asked is this reply's, as in the first pass (askTikTok
          // passes over TikTok messages that some message of ours records already).
          const echo = await echoOf(tx, c, c.updated_at);
          const answer = echo ?? answers.get(c.id);
          if (answer) {
            await this.lane(c.account_id).sentCarefully(tx, events, c, answer.providerMessageId, answer.timestampMs);
            adopted.add(c.account_id);
            found++;
            continue;
          }
          requeued++;
          await tx.updateTable('messages').set({ status: 'queued', next_attempt_at: now, updated_at: now }).where('id', '=', c.id).where('status', '=', 'sending').execute();
          const message = answer === null
            ? 'the process sending this reply stopped before TikTok answered, and TikTok has no such message; it will be sent again'
            : 'the process sending this reply stopped before TikTok answered, and TikTok could not be asked whether it has it; it will be sent again';
          events.push(statusEvent({
            accountId: c.account_id, provider: 'tiktok', conversationId: c.conversation_id, contact: contactOf(c), messageId: c.id, providerMessageId: null,
            status: 'queued', error: { code: 'send_interrupted', message, provider_code: null },
          }));
        }
      });
    }
    if (found) this.ctx.log.warn({ count: found }, 'sender: replies left in sending by a stopped process were found among TikTok\'s messages; marked sent');
    if (requeued) this.ctx.log.warn({ count: requeued }, 'sender: re-queued replies left in sending by a stopped process');
    // Lanes may still list those replies as pending, holding back their conversations.
    for (const accountId of adopted) this.lane(accountId).forgetRows();
    this.discover();
  }
}
