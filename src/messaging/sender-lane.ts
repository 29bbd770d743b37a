import { performance } from 'node:perf_hooks';
import { sql } from 'kysely';
import type { AppContext } from '../context.js';
import { ApiError } from '../core/errors.js';
import { type Tx } from '../db/database.js';
import { releaseLease, tryAcquireLease } from '../db/leases.js';
import type { EventInput } from '../events/types.js';
import { accessToken, AccountUnavailable } from '../accounts/tokens.js';
import { getAccount, setAccountStatus } from '../accounts/store.js';
import { fetchConversation, LISTED_MESSAGES } from '../ingest/sync.js';
import { classifyTiktokError, TiktokApiError, TiktokNetworkError } from '../providers/tiktok/errors.js';
import { SEND_PATH } from '../providers/tiktok/api-client.js';
import { tiktokClient } from '../providers/tiktok/provider.js';
import { idFloor, idTime } from '../core/ids.js';
import { isPending, lockConversation, preview, statusEvent } from './queue.js';
import { gateFor, paced } from './rate-gate.js';
import { iso, messageView, type MessageRow } from './views.js';
import { WINDOW_POLICIES, windowAt } from './window.js';
import { candidates, contactOf, echoOf, pendingOf, pendingSince, ECHO_CLOCK_SKEW_MS, FETCH_LIMIT, type Candidate, type Row, type TikTokSend } from './pending-replies.js';
import { holdReason, refusal, unconfirmedSince, UNCONFIRMED, type SendError } from './send-errors.js';
import { sendBody } from './send-body.js';
import type { Sender } from './sender.js';

/**
 * One account's lane of the sender (sender.ts): paces every TikTok messaging call of the account
 * through its RateGate, claims a reply just before its slot, keeps at most one reply in flight per
 * conversation (only a conversation's oldest pending reply, its head, can be claimed), and records
 * each attempt's outcome.
 */

const LEASE_MS = 30_000;
const MAX_INFLIGHT_PER_ACCOUNT = 16;
/** How often a lane reads replies accepted meanwhile: with little work in hand, and with a second's worth. */
const REFETCH_MS = 20;
const BUSY_REFETCH_MS = 1000;
/** A lane re-reads its whole queue at most this often (else only what is new). */
const FULL_REFETCH_MS = 10_000;
/** Ids of replies accepted by other processes may be this much older than ours. */
const ID_SKEW_MS = 2_000;
const TOKEN_CACHE_MS = 30_000;
const LANE_IDLE_MS = 60_000;
/** How long, and for how many replies, a lane ignores stale reads of replies it has finished. */
const JUST_DONE_MS = 30_000;
const JUST_DONE_KEPT = 512;

export const leaseName = (accountId: string) => `sender:${accountId}`;

interface AccountInfo { id: string; provider: string; external_id: string; status: string }

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

class Signal {
  private waiters: (() => void)[] = [];
  wait(timeoutMs = 1000): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, timeoutMs);
      const w = () => { clearTimeout(t); resolve(); };
      function done() { resolve(); }
      this.waiters.push(w);
    });
  }
  notify(): void {
    const list = this.waiters;
    this.waiters = [];
    for (const w of list) w();
  }
}

export class Lane {
  private readonly inflight = new Map<string, string>(); // conversation id → message id
  private readonly tasks = new Set<Promise<void>>();
  /** The account's pending replies as last read (oldest first), kept current as sends complete. */
  private rows: Row[] | null = null;
  private fetchedAt = 0;
  private fullFetchedAt = 0;
  /** The last read was cut at FETCH_LIMIT: more replies wait in the database. */
  private more = false;
  /** Replies that left the queue here lately (sent, failed): id → when. */
  private readonly justDone = new Map<string, number>();
  private running: Promise<void> | null = null;
  private dirty = false;
  private readonly signal = new Signal();
  private token: { value: string; at: number } | null = null;
  private account: AccountInfo | null = null;
  private leasedUntil = 0;
  private wakeTimer: NodeJS.Timeout | null = null;
  private wakeAt = Infinity;
  private lastActive = Date.now();
  private stopping = false;

  constructor(private readonly sender: Sender, readonly accountId: string) {}

  private get ctx(): AppContext { return this.sender.ctx; }

  inflightIds(): string[] { return [...this.inflight.values()]; }

  /** Reads the queue afresh on the next turn. */
  forgetRows(): void {
    this.rows = null;
    this.poke();
  }

  forgetToken(): void {
    this.token = null;
    this.account = null;
  }

  /** New or changed replies for this account: read the queue again (soon) and run. */
  poke(): void {
    if (this.sender.stopped || this.stopping) return;
    this.lastActive = Date.now();
    this.dirty = true;
    this.signal.notify();
    if (this.running) return;
    this.running = this.run().catch((err) => this.ctx.log.error({ err, account_id: this.accountId }, 'sender: lane failed')).finally(() => {
      this.running = null;
      if (this.dirty && !this.sender.stopped && !this.stopping) this.poke();
    });
  }

  /**
   * The poll saw due replies of this account. A running lane holding a recent read of its queue
   * knows them already (its own retries, on its own timers; other changes are announced and poke
   * it): re-reading on every poll cost one read per busy account per second while draining.
   */
  due(): void {
    if (this.running && this.rows !== null && Date.now() - this.fullFetchedAt < FULL_REFETCH_MS) return;
    this.poke();
  }

  reapIfIdle(): void {
    if (this.running || this.inflight.size || this.wakeAt !== Infinity || Date.now() - this.lastActive < LANE_IDLE_MS) return;
    this.sender.dropLane(this);
    if (this.sender.pg && this.leasedUntil > 0) void releaseLease(this.ctx.database, leaseName(this.accountId), this.sender.owner).catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.signal.notify();
    await this.running;
    await Promise.all([...this.tasks]);
  }

  private wakeLater(atMs: number): void {
    const delay = Math.max(0, atMs - this.ctx.clock());
    const at = Date.now() + delay;
    if (at >= this.wakeAt) return;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeAt = at;
    this.wakeTimer = setTimeout(() => { this.wakeTimer = null; this.wakeAt = Infinity; this.poke(); }, delay + 5);
    this.wakeTimer.unref();
  }

  private async holdLease(): Promise<boolean> {
    if (!this.sender.pg) return true;
    const now = Date.now();
    if (this.leasedUntil - now > LEASE_MS / 2) return true;
    const ok = await tryAcquireLease(this.ctx.database, leaseName(this.accountId), this.sender.owner, LEASE_MS, this.ctx.clock());
    this.leasedUntil = ok ? now + LEASE_MS : 0;
    if (!ok) this.rows = null;
    return ok;
  }

  private async run(): Promise<void> {
    while (!this.sender.stopped && !this.stopping) {
      if (!(await this.holdLease())) return; // another process sends for this account
      if (this.inflight.size >= MAX_INFLIGHT_PER_ACCOUNT) { await this.signal.wait(); continue; }
      // Read the queue: all of it when nothing is known (or every FULL_REFETCH_MS while told of
      // changes); otherwise only the replies accepted since the last read, and only as often as
      // needed: a lane with a second of work in hand reads at most every BUSY_REFETCH_MS (what is
      // new queues behind it anyway), an idle one at once (a burst of accepts costs one read).
      const sinceFetch = Date.now() - this.fetchedAt;
      const qps = this.ctx.config.tiktokQps;
      const runningLow = this.more && sinceFetch >= REFETCH_MS && !this.readyAtLeast(qps);
      if (this.rows === null || runningLow || (this.dirty && sinceFetch >= (this.readyAtLeast(qps) ? BUSY_REFETCH_MS : REFETCH_MS))) {
        this.dirty = false;
        const account = await this.loadAccount();
        if (account.status !== 'active') { await this.holdAll(null, holdReason(account.status)); return; }
        if (this.rows === null || runningLow || Date.now() - this.fullFetchedAt >= FULL_REFETCH_MS) {
          this.rows = await this.fetch();
          // (Nothing sendable yet, all waiting for retries: their timers and the poll bring the lane back.)
          this.more = this.rows.length >= FETCH_LIMIT && this.readyAtLeast(1);
          this.fullFetchedAt = Date.now();
        } else {
          const fresh = await this.fetch(this.maxId());
          if (fresh.length >= FETCH_LIMIT) this.more = true;
          this.merge(fresh);
        }
        this.fetchedAt = Date.now();
      }
      const c = this.next();
      if (!c) {
        if (this.dirty || this.more) { await this.signal.wait(Math.max(1, REFETCH_MS - (Date.now() - this.fetchedAt))); continue; }
        if (this.inflight.size > 0) { await this.signal.wait(); continue; }
        const due = this.nextDue();
        if (due !== null) this.wakeLater(due);
        return;
      }
      const gate = gateFor(this.ctx, this.accountId);
      const slot = gate.reserve();
      const lead = slot - performance.now() - this.sender.claimLeadMs();
      this.inflight.set(c.conversation_id, c.id);
      if (lead > 0) await sleep(lead);
      // Not awaited: the claim commits while the loop moves on to the next slot, so a slow commit
      // (a busy Postgres) delays one reply's start, never the account's rate.
      const task = this.claimAndExecute(c, slot)
        .catch((err) => this.ctx.log.error({ err, message_id: c.id }, 'sender: recording the outcome failed; the reply stays sending until recovered'))
        .finally(() => {
          this.release(c);
          this.tasks.delete(task);
        });
      this.tasks.add(task);
    }
  }

  private async claimAndExecute(c: Row, slot: number): Promise<void> {
    const claimed = await this.claim(c).catch(() => false);
    if (!claimed) {
      // Someone else changed it (a hold, another process): forget what we knew.
      gateFor(this.ctx, this.accountId).cancel(slot);
      this.rows = null;
      return;
    }
    this.lastActive = Date.now();
    await this.execute(c, slot);
  }

  /** The conversation may send its next reply (this one is out of TikTok's hands or back in the queue). */
  private release(c: Row): void {
    if (this.inflight.get(c.conversation_id) === c.id) {
      this.inflight.delete(c.conversation_id);
      this.signal.notify();
    }
  }

  /** The oldest reply that can go now: the head of a conversation with nothing in flight, due. */
  private next(): Row | undefined {
    const now = this.ctx.clock();
    const heads = new Set<string>();
    for (const r of this.rows ?? []) {
      if (heads.has(r.conversation_id)) continue;
      heads.add(r.conversation_id);
      if (this.inflight.has(r.conversation_id) || r.status !== 'queued' || (r.next_attempt_at ?? 0) > now) continue;
      return r;
    }
    return undefined;
  }

  /**
   * Whether at least `n` replies could go now or after their conversation's current one (a rough
   * measure of work in hand). Stops counting at `n`: the loop asks on every turn.
   */
  private readyAtLeast(n: number): boolean {
    const now = this.ctx.clock();
    let count = 0;
    for (const r of this.rows ?? []) if (r.status === 'queued' && (r.next_attempt_at ?? 0) <= now && ++count >= n) return true;
    return false;
  }

  private maxId(): string | null {
    const rows = this.rows ?? [];
    return rows.length ? rows[rows.length - 1].id : null;
  }

  /** Adds newly read replies (ids not known yet), keeping id order. */
  private merge(fresh: Row[]): void {
    if (!fresh.length || !this.rows) return;
    const known = new Set(this.rows.map((r) => r.id));
    const add = fresh.filter((r) => !known.has(r.id));
    if (!add.length) return;
    this.rows = [...this.rows, ...add].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** When the earliest waiting head (a reply waiting for its retry) becomes due. */
  private nextDue(): number | null {
    const heads = new Set<string>();
    let due: number | null = null;
    for (const r of this.rows ?? []) {
      if (heads.has(r.conversation_id)) continue;
      heads.add(r.conversation_id);
      if (r.status === 'queued' && r.next_attempt_at !== null) due = due === null ? r.next_attempt_at : Math.min(due, r.next_attempt_at);
    }
    return due;
  }

  /** The reply left the queue (sent or failed for good). */
  private done(c: Row): void {
    if (this.rows) this.rows = this.rows.filter((r) => r.id !== c.id);
    this.justDone.set(c.id, Date.now());
    if (this.justDone.size > JUST_DONE_KEPT) this.justDone.delete(this.justDone.keys().next().value!);
  }

  private async loadAccount(): Promise<AccountInfo> {
    if (!this.account) {
      const a = await this.ctx.database.db.selectFrom('accounts').select(['id', 'provider', 'external_id', 'status']).where('id', '=', this.accountId).executeTakeFirst();
      this.account = a ?? { id: this.accountId, provider: 'tiktok', external_id: '', status: 'disconnected' };
    }
    return this.account;
  }

  /**
   * The account's pending replies, oldest first (the partial index on pending rows); with `after`,
   * only those accepted since (ids are time-ordered; a margin covers other processes' clocks).
   */
  private async fetch(after: string | null = null): Promise<Row[]> {
    const db = this.ctx.database.db;
    const rows = (after
      ? await pendingSince.all(db, { accountId: this.accountId, floor: idFloor('msg', idTime(after) - ID_SKEW_MS) })
      : await pendingOf.all(db, { accountId: this.accountId })) as Row[];
    if (!this.justDone.size) return rows;
    // A read that overlapped the writing of a result still shows that reply pending (`sending`):
    // it would block its conversation until the next full read.
    const since = Date.now() - JUST_DONE_MS;
    return rows.filter((r) => (this.justDone.get(r.id) ?? 0) < since);
  }

  /** queued → sending (with its event); its latency sets how early the next claims start. */
  private async claim(c: Candidate): Promise<boolean> {
    const started = performance.now();
    try {
      return await this.sender.committer.claim({
        id: c.id,
        event: (attempts) => {
          c.attempts = attempts;
          return this.status(c, 'sending', null);
        },
      });
    } finally {
      this.sender.recordClaimLatency(performance.now() - started);
    }
  }

  /**
   * Whether TikTok took this reply, from its list of the conversation's latest messages: a business
   * message with the same content, sent since the claim, that no message of ours already records.
   * null: TikTok has none; undefined: TikTok could not be asked (or the reply may be older than the
   * list reaches); 'elsewhere': another process holds the account (on Postgres), and asks itself,
   * so that the account's calls keep to one rate gate.
   */
  async askTikTok(c: Candidate, claimedAt: number): Promise<TikTokSend | null | undefined | 'elsewhere'> {
    try {
      if (!(await this.holdLease())) return 'elsewhere';
      const account = await getAccount(this.ctx.database.db, this.accountId);
      if (account.status !== 'active') return undefined;
      const gate = gateFor(this.ctx, this.accountId);
      const listed = await fetchConversation(this.ctx, account, c.conv_external_id, 0, (call) => paced(gate, call));
      const ours = listed.flatMap((f) => (f.event.kind === 'business_message' ? [f.event.message] : []));
      const candidates = ours.filter((m) => m.timestampMs >= claimedAt - ECHO_CLOCK_SKEW_MS && m.type === c.type && (m.text ?? null) === c.text);
      if (!candidates.length) {
        // The list holds the latest messages only: when it does not reach back to the claim, TikTok cannot tell.
        const reachesClaim = listed.length > 0 && listed[0].timestampMs < claimedAt - ECHO_CLOCK_SKEW_MS;
        return reachesClaim || listed.length < LISTED_MESSAGES ? null : undefined;
      }
      const known = new Set((await this.ctx.database.db.selectFrom('messages').select('provider_message_id')
        .where('account_id', '=', this.accountId).where('provider_message_id', 'in', candidates.map((m) => m.providerMessageId)).execute()).map((r) => r.provider_message_id));
      const match = candidates.find((m) => !known.has(m.providerMessageId));
      return match ? { providerMessageId: match.providerMessageId, timestampMs: match.timestampMs } : null;
    } catch (err) {
      this.ctx.log.warn({ err, account_id: this.accountId, message_id: c.id }, 'sender: could not ask TikTok whether it has a reply whose send got no clear answer (a stopped process or a timeout)');
      return undefined;
    }
  }

  private status(c: Candidate, status: string, providerMessageId: string | null, error: Record<string, unknown> | null = null, extra?: Record<string, unknown>): EventInput {
    return statusEvent({
      accountId: c.account_id, provider: this.account?.provider ?? 'tiktok', conversationId: c.conversation_id, contact: contactOf(c),
      messageId: c.id, providerMessageId, status, error, extra: { attempts: c.attempts, ...(extra ?? {}) },
    });
  }

  private async currentToken(): Promise<string> {
    if (this.token && Date.now() - this.token.at < TOKEN_CACHE_MS) return this.token.value;
    const value = await accessToken(this.ctx, this.accountId);
    this.token = { value, at: Date.now() };
    return value;
  }

  /** One TikTok call in its rate slot; a 40102 refreshes the token once and retries in a new slot. */
  private async call<T>(slot: number, fn: (token: string) => Promise<T>): Promise<T> {
    const gate = gateFor(this.ctx, this.accountId);
    const token = await this.currentToken();
    try {
      return await paced(gate, () => fn(token), slot);
    } catch (err) {
      if (classifyTiktokError(err) !== 'refresh') throw err;
      this.token = null;
      const fresh = await accessToken(this.ctx, this.accountId, { rejected: token });
      this.token = { value: fresh, at: Date.now() };
      return paced(gate, () => fn(fresh));
    }
  }

  private async execute(c: Row, slot: number): Promise<void> {
    const ctx = this.ctx;
    const gate = gateFor(ctx, this.accountId);
    const unconfirmed = unconfirmedSince(c);
    if (unconfirmed !== null) {
      // The lookup takes this slot; the send, if it is still needed, the next one.
      gate.cancel(slot);
      if (await this.adoptedEarlierSend(c, unconfirmed)) return;
      slot = gate.reserve();
    }
    const policy = WINDOW_POLICIES[ctx.config.tiktokWindowPolicy];
    const w = windowAt(policy, { lastInboundAt: c.last_inbound_at, outboundSinceInbound: 0 }, ctx.clock());
    if (!w.open) {
      // Held or retried past the window's end: TikTok would refuse it (and count a violation).
      gate.cancel(slot);
      await this.fail(c, { code: 'window_closed', message: `the reply window closed at ${iso(w.expires_at)} before the reply could be sent`, provider_code: null });
      return;
    }
    const account = await this.loadAccount();
    const client = tiktokClient(ctx.config);
    let providerId: string;
    const attemptedAt = ctx.clock();
    try {
      let sendSlot = slot;
      let mediaId: string | null = null;
      if (c.type === 'image') {
        const media = await ctx.database.db.selectFrom('media').select(['id', 'provider_media_id', 'data', 'content_type']).where('message_id', '=', c.id).executeTakeFirst();
        if (!media) throw new TiktokApiError(40002, 'the image of this reply is missing', null, 'local');
        mediaId = media.provider_media_id;
        if (!mediaId) {
          const bytes = Buffer.from(media.data!);
          mediaId = await this.call(slot, (token) => client.uploadImage(token, account.external_id, bytes, media.content_type ?? 'image/jpeg'));
          const uploaded = mediaId;
          await ctx.database.db.updateTable('media').set({ provider_media_id: uploaded }).where('id', '=', media.id).execute();
          sendSlot = gate.reserve();
        }
      }
      const body = sendBody(c, mediaId);
      providerId = await this.call(sendSlot, (token) => client.send(token, account.external_id, c.conv_external_id, body));
    } catch (err) {
      await this.failed(c, err, unconfirmed ?? attemptedAt);
      return;
    }
    // TikTok has it: the conversation's next reply may go while this result is written. (A failure
    // to write it leaves the reply `sending`: recovered later, never marked failed after TikTok took it.)
    this.sender.outcomes.sent.inc();
    this.done(c);
    this.release(c);
    const written = this.sent(c, providerId, ctx.clock());
    ctx.recentSends.recording(account.external_id, providerId, written);
    await written;
  }

  private sent(c: Candidate, providerId: string, ts: number): Promise<void> {
    return this.sender.committer.sent({
      id: c.id, conversationId: c.conversation_id, providerMessageId: providerId, providerTs: ts, preview: preview(c.text, c.type),
      events: (read) => this.sentEvents(c, providerId, ts, read, true),
      fallback: (tx, events) => this.sentCarefully(tx, events, c, providerId, ts),
    });
  }

  private sentEvents(c: Candidate, providerId: string, ts: number, read: boolean, withSentEvent: boolean): EventInput[] {
    const out = [this.status(c, 'sent', providerId)];
    if (read) out.push(this.status(c, 'read', providerId));
    if (withSentEvent) {
      const view = messageView({ ...this.asRow(c), provider_message_id: providerId, provider_timestamp: ts, status: read ? 'read' : 'sent' });
      out.push({
        event: 'message.sent', account_id: c.account_id, provider: this.account?.provider ?? 'tiktok', conversation_id: c.conversation_id,
        timestamp: Math.floor(ts / 1000),
        data: {
          text: c.text, message_id: c.id, provider_message_id: providerId, conversation_id: c.conversation_id, contact: contactOf(c),
          source: c.source, to: c.contact_external_id, type: c.type, media: view.media, share_post: view.share_post, template: view.template,
          reply_to: c.reply_to, sent_by: c.sent_by, status: view.status,
        },
      });
    }
    return out;
  }

  /**
   * The result, written on its own: when TikTok's echo outlived its deferral (apply.ts) it was
   * recorded as a message of its own, holding the TikTok id; this reply adopts it. Also how a reply
   * left `sending` by a stopped process adopts its echo (Sender.recoverStale), and one whose send may
   * have reached TikTok what TikTok has (Lane.adoptedEarlierSend).
   */
  async sentCarefully(tx: Tx, events: EventInput[], c: Candidate, providerId: string, ts: number): Promise<void> {
    const now = this.ctx.clock();
    // The conversation first, locked on Postgres (the order ingest takes: the conversation, then its
    // messages), so its read mark is as the lock leaves it (committer.ts sentAll says why).
    const conv = await lockConversation(tx, c.conversation_id);
    const echo = await tx.selectFrom('messages').select(['id', 'counted_in_window']).where('account_id', '=', c.account_id)
      .where('provider_message_id', '=', providerId).executeTakeFirst();
    const echoSeen = Boolean(echo && echo.id !== c.id);
    if (echo && echoSeen) {
      await tx.deleteFrom('messages').where('id', '=', echo.id).execute();
      await tx.deleteFrom('media').where('message_id', '=', echo.id).execute();
    }
    const read = (conv.customer_read_at ?? 0) >= ts;
    await tx.updateTable('messages').set({
      status: read ? 'read' : 'sent', provider_message_id: providerId, provider_timestamp: ts, next_attempt_at: null, error: null, updated_at: now,
    }).where('id', '=', c.id).execute();
    await tx.updateTable('conversations').set({
      last_outbound_at: sql<number>`case when coalesce(last_outbound_at, 0) < ${ts} then ${ts} else last_outbound_at end`,
      last_message_preview: sql<string>`case when coalesce(last_message_at, 0) <= ${ts} then ${preview(c.text, c.type)} else last_message_preview end`,
      last_message_at: sql<number>`case when coalesce(last_message_at, 0) < ${ts} then ${ts} else last_message_at end`,
      first_unanswered_at: sql<number | null>`case when coalesce(last_inbound_at, 0) <= ${ts} then null else first_unanswered_at end`,
      // The echo recorded on its own counted once more: take that back.
      ...(echoSeen && echo!.counted_in_window ? { outbound_since_inbound: sql<number>`case when outbound_since_inbound > 0 then outbound_since_inbound - 1 else 0 end` } : {}),
      updated_at: now,
    }).where('id', '=', c.conversation_id).execute();
    // A message.sent went out for the echo already: one per reply.
    events.push(...this.sentEvents(c, providerId, ts, read, !echoSeen));
  }

  private asRow(c: Candidate): MessageRow {
    return {
      id: c.id, conversation_id: c.conversation_id, account_id: c.account_id, direction: 'outbound', provider_message_id: null, type: c.type, text: c.text,
      media: c.media, extra: c.extra, source: c.source, status: 'sending', error: null, idempotency_key: c.idempotency_key, request_hash: null,
      reply_to: c.reply_to, sent_by: c.sent_by, attempts: c.attempts, next_attempt_at: null, counted_in_window: c.counted_in_window,
      provider_timestamp: null, created_at: c.created_at, updated_at: c.created_at,
    };
  }

  /**
   * Decides a failed attempt: hold (account), retry with backoff, or fail for good. `since`: when the
   * earliest attempt that may have reached TikTok began (this one's start, when it may have).
   */
  private async failed(c: Row, err: unknown, since: number): Promise<void> {
    const ctx = this.ctx;
    if (err instanceof AccountUnavailable || (err instanceof ApiError && err.code.startsWith('account_'))) {
      this.account = null;
      await this.holdAll(c, { code: err.code, message: err.message });
      return;
    }
    const action = classifyTiktokError(err);
    const providerCode = err instanceof TiktokApiError ? err.code : null;
    const reason = err instanceof Error ? err.message : String(err);
    if (action === 'reauthorize') {
      await setAccountStatus(ctx, this.accountId, 'needs_reauth', `TikTok refused the access token (${providerCode}): reconnect the account`);
      this.forgetToken();
      await this.holdAll(c, { code: 'account_needs_reauth', message: `${reason}: reconnect the account; its replies wait until then` });
      return;
    }
    if (action === 'retry' || action === 'refresh') {
      const unclear = err instanceof TiktokNetworkError && err.mayHaveArrived && err.endpoint === SEND_PATH;
      const schedule = ctx.config.sendRetrySchedule;
      if (c.attempts <= schedule.length) {
        const nextAt = ctx.clock() + schedule[c.attempts - 1] * 1000;
        const policy = WINDOW_POLICIES[ctx.config.tiktokWindowPolicy];
        const w = windowAt(policy, { lastInboundAt: c.last_inbound_at, outboundSinceInbound: 0 }, nextAt);
        if (w.open) {
          if (providerCode === 40100) ctx.log.warn({ account_id: this.accountId, message_id: c.id }, 'sender: TikTok throttled (40100); retrying');
          const error: SendError = unclear
            ? { code: UNCONFIRMED, message: `${reason}; TikTok may have the reply: it is asked before the reply is sent again`, provider_code: null, attempted_at: new Date(since).toISOString() }
            : { code: err instanceof TiktokNetworkError ? 'network_error' : 'provider_error', message: reason, provider_code: providerCode };
          await this.retry(c, error, nextAt);
          return;
        }
        if (unclear && await this.adoptedEarlierSend(c, since)) return;
        await this.fail(c, { code: 'window_closed', message: `could not send before the reply window closed at ${iso(w.expires_at)}: ${reason}`, provider_code: providerCode });
        return;
      }
      if (unclear && await this.adoptedEarlierSend(c, since)) return;
      await this.fail(c, { code: 'provider_error', message: `TikTok did not take the reply after ${c.attempts} attempts: ${reason}`, provider_code: providerCode });
      return;
    }
    await this.fail(c, refusal(c, err, providerCode));
  }

  /**
   * A reply whose earlier attempt (begun at `since`) may have reached TikTok: recorded as sent when
   * its echo was recorded meanwhile or TikTok lists it (askTikTok). Otherwise (TikTok has none, or
   * cannot tell) it is for the caller to send it (again: at least once).
   */
  private async adoptedEarlierSend(c: Row, since: number): Promise<boolean> {
    const asked = await echoOf(this.ctx.database.db, c, since) ?? await this.askTikTok(c, since);
    const found = asked === 'elsewhere' ? undefined : asked;
    if (!found) {
      if (found === undefined) this.ctx.log.warn({ account_id: this.accountId, message_id: c.id }, 'sender: could not learn whether TikTok has a reply whose send timed out; sending it again');
      return false;
    }
    this.sender.outcomes.sent.inc();
    this.done(c);
    this.release(c);
    const account = await this.loadAccount();
    const written = this.sender.committer.run((tx, events) => this.sentCarefully(tx, events, c, found.providerMessageId, found.timestampMs));
    this.ctx.recentSends.recording(account.external_id, found.providerMessageId, written);
    await written;
    return true;
  }

  private retry(c: Row, error: SendError, nextAt: number): Promise<void> {
    const now = this.ctx.clock();
    const stored = JSON.stringify(error);
    return this.sender.committer.run(async (tx, events) => {
      await tx.updateTable('messages').set({ status: 'queued', next_attempt_at: nextAt, error: stored, updated_at: now }).where('id', '=', c.id).execute();
      events.push(this.status(c, 'queued', null, { ...error, retrying: true }, { next_attempt_at: iso(nextAt) }));
    }).then(() => {
      this.sender.outcomes.retry.inc();
      // Still the head of its conversation: the ones behind it wait for this retry.
      for (const r of [c, ...(this.rows ?? []).filter((x) => x.id === c.id)]) {
        r.status = 'queued';
        r.next_attempt_at = nextAt;
        r.error = stored;
      }
      this.wakeLater(nextAt);
    });
  }

  /** Failed for good: the reply gives its quota back. */
  private fail(c: Row, error: SendError): Promise<void> {
    const now = this.ctx.clock();
    return this.sender.committer.run(async (tx, events) => {
      await tx.updateTable('messages').set({ status: 'failed', error: JSON.stringify(error), counted_in_window: 0, next_attempt_at: null, updated_at: now })
        .where('id', '=', c.id).execute();
      if (c.counted_in_window) {
        await tx.updateTable('conversations').set({ outbound_since_inbound: sql<number>`case when outbound_since_inbound > 0 then outbound_since_inbound - 1 else 0 end`, updated_at: now })
          .where('id', '=', c.conversation_id).execute();
      }
      events.push(this.status(c, 'failed', null, { ...error }));
    }).then(() => {
      this.sender.outcomes.failed.inc();
      this.done(c);
    });
  }

  /** The account cannot send (needs reauthorization, restricted, disconnected): its replies wait, held. */
  private holdAll(current: Candidate | null, reason: { code: string; message: string }): Promise<void> {
    const now = this.ctx.clock();
    this.rows = null;
    return this.sender.committer.run(async (tx, events) => {
      const rows = await candidates(tx).where('m.account_id', '=', this.accountId).where(isPending('m'))
        .where((eb) => eb.or([eb('m.status', '=', 'queued'), ...(current ? [eb('m.id', '=', current.id)] : [])])).execute();
      if (!rows.length) return;
      // The stored error stays: a send_unconfirmed mark must outlive the hold (the lookup comes after it).
      await tx.updateTable('messages').set({ status: 'held', updated_at: now }).where('id', 'in', rows.map((r) => r.id)).execute();
      for (const r of rows) {
        events.push(statusEvent({
          accountId: r.account_id, provider: 'tiktok', conversationId: r.conversation_id, contact: contactOf(r), messageId: r.id, providerMessageId: null,
          status: 'held', error: { ...reason, provider_code: null },
        }));
      }
    }).then(() => {
      if (current) this.sender.outcomes.held.inc();
    });
  }
}
