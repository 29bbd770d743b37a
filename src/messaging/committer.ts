import { sql, type RawBuilder, type SqlBool } from 'kysely';
import type { AppContext } from '../context.js';
import { Batches } from '../core/batches.js';
import { ApiError } from '../core/errors.js';
import { isPostgres, transaction, type Tx } from '../db/database.js';
import { prepared } from '../db/prepared.js';
import { conversationsLockedInOrder, inListOf, listValue, rowsAs } from '../db/row-sets.js';
import { announceEvents, appendEvents, tally } from '../events/outbox.js';
import type { EventInput } from '../events/types.js';

/**
 * Group commit for the outbound path: state changes from many concurrent requests and sends
 * (accepts, claims, results, retries) are written in one transaction with their events (the
 * outbox), instead of paying one durable commit each; the hottest two kinds (claims and results)
 * are one statement for the whole batch.
 *
 * Each operation still learns its own outcome. An operation may refuse with an ApiError before it
 * writes anything (an accept over quota): only that operation fails. Any other error aborts the
 * batch, which is then replayed one operation per transaction, so one bad row sinks nothing else.
 */
export type Op<T> = (tx: Tx, events: EventInput[]) => Promise<T>;

export interface Claim { id: string; event: (attempts: number) => EventInput }

export interface SentRecord {
  id: string;
  conversationId: string;
  providerMessageId: string;
  providerTs: number;
  preview: string;
  /** Events for the outcome: the caller knows whether the customer had already read it. */
  events: (read: boolean) => EventInput[];
  /** The careful version, used when the batch statement fails (an echo took the TikTok id). */
  fallback: Op<void>;
}

type Item =
  | { kind: 'op'; op: Op<unknown>; resolve: (v: unknown) => void; reject: (e: unknown) => void }
  | { kind: 'claim'; claim: Claim; resolve: (v: unknown) => void; reject: (e: unknown) => void }
  | { kind: 'sent'; sent: SentRecord; resolve: (v: unknown) => void; reject: (e: unknown) => void };

/** Keeps one transaction short: on SQLite it holds the only connection (and the event loop). */
const MAX_BATCH = 256;

export class Committer {
  private readonly batches: Batches<Item>;

  constructor(private readonly ctx: AppContext) {
    // SQLite has one writer. Postgres commits from several connections at once, but every batch
    // ends in the event-append lock (outbox.ts), a batch of results holding its conversations'
    // rows while it waits: a third or fourth batch in flight mostly waits there, and splits the
    // load into more, smaller transactions. bench:outbound on PostgreSQL, 2 batches at once against
    // 4: PostgreSQL CPU per POST of the sending process 0.94-1.11 ms against 1.12-1.36 (probes in a
    // row), 1.27-1.34 against 1.39-1.41 (round the accounts); while draining, per reply, 0.20
    // against 0.26 ms (gateway 0.36 against 0.45), 194 against 119 of 200 accounts at 9.5/s or
    // more. POST p99 moved both ways within its run-to-run spread. One at a time (0.88-1.22 ms)
    // was no better within the spread, and every claim waits for the batch before it.
    this.batches = new Batches((batch) => this.commit(batch), { parallel: ctx.database.dialect === 'postgres' ? 2 : 1, maxBatch: MAX_BATCH });
  }

  run<T>(op: Op<T>): Promise<T> {
    return this.push((resolve, reject) => ({ kind: 'op', op: op as Op<unknown>, resolve, reject }));
  }

  /** queued → sending; resolves false when the row was no longer queued. */
  claim(claim: Claim): Promise<boolean> {
    return this.push((resolve, reject) => ({ kind: 'claim', claim, resolve, reject }));
  }

  sent(sent: SentRecord): Promise<void> {
    return this.push((resolve, reject) => ({ kind: 'sent', sent, resolve, reject }));
  }

  /** Resolves when everything queued so far is written. */
  idle(): Promise<void> {
    return this.batches.idle();
  }

  private push<T>(make: (resolve: (v: unknown) => void, reject: (e: unknown) => void) => Item): Promise<T> {
    return new Promise<T>((resolve, reject) => this.batches.push(make(resolve as (v: unknown) => void, reject)));
  }

  private async commit(batch: Item[]): Promise<void> {
    if (!batch.length) return;
    const outcomes: { ok: boolean; value: unknown }[] = [];
    const appended = { events: 0, deliveries: 0 };
    const add = (t: { events: number; deliveries: number }) => { appended.events += t.events; appended.deliveries += t.deliveries; };
    try {
      await transaction(this.ctx.database.db, async (tx) => {
        const events: EventInput[] = [];
        // One statement for all the results and one for all the claims, whatever their order of
        // arrival: the items of a batch are independent (a reply has at most one item in flight,
        // and a conversation's next claim is only ever queued after its previous reply's result),
        // so results first, then claims, keeps every conversation's events in order.
        const sents = batch.flatMap((it, i) => (it.kind === 'sent' ? [{ i, sent: it.sent }] : []));
        const claims = batch.flatMap((it, i) => (it.kind === 'claim' ? [{ i, claim: it.claim }] : []));
        if (sents.length) (await sentAll(tx, sents.map((x) => x.sent), this.ctx.clock(), events)).forEach((o, k) => (outcomes[sents[k].i] = o));
        if (claims.length) (await claimAll(tx, claims.map((x) => x.claim), this.ctx.clock(), events)).forEach((o, k) => (outcomes[claims[k].i] = o));
        for (let i = 0; i < batch.length; i++) {
          const item = batch[i];
          if (item.kind !== 'op') continue;
          const own: EventInput[] = [];
          try {
            outcomes[i] = { ok: true, value: await item.op(tx, own) };
            events.push(...own);
          } catch (err) {
            // A refusal before any write leaves the transaction clean; anything else aborts it.
            if (!(err instanceof ApiError)) throw err;
            outcomes[i] = { ok: false, value: err };
          }
        }
        add(tally(await appendEvents(tx, events, this.ctx.clock())));
      });
    } catch (batchErr) {
      if (batch.length === 1 && batch[0].kind !== 'sent') {
        batch[0].reject(batchErr);
        return;
      }
      this.ctx.log.debug({ err: batchErr, size: batch.length }, 'outbound batch failed; replaying one by one');
      for (const item of batch) add(await this.single(item));
      announceEvents(this.ctx.bus, appended);
      return;
    }
    batch.forEach((item, i) => (outcomes[i].ok ? item.resolve(outcomes[i].value) : item.reject(outcomes[i].value)));
    announceEvents(this.ctx.bus, appended);
  }

  private async single(item: Item): Promise<{ events: number; deliveries: number }> {
    const op: Op<unknown> = item.kind === 'op' ? item.op
      : item.kind === 'sent' ? item.sent.fallback
      : async (tx, events) => (await claimAll(tx, [item.claim], this.ctx.clock(), events))[0].value;
    try {
      let value: unknown;
      let n = { events: 0, deliveries: 0 };
      await transaction(this.ctx.database.db, async (tx) => {
        const own: EventInput[] = [];
        value = await op(tx, own);
        n = tally(await appendEvents(tx, own, this.ctx.clock()));
      });
      item.resolve(value);
      return n;
    } catch (err) {
      item.reject(err);
      return { events: 0, deliveries: 0 };
    }
  }
}

/**
 * Found by id (the primary key). The status is compared as an expression so that no planner reads
 * by the status index instead: SQLite always did, and Postgres did with statistics from before the
 * queue filled (a generic plan), both walking every queued reply to claim a few.
 */
export const claimQueued = prepared<{ ids: unknown; now: number }>()((db, $) => db.updateTable('messages')
  .set({ status: 'sending', attempts: sql<number>`attempts + 1`, updated_at: $('now') })
  .where(inListOf(db, 'id', $('ids'))).where(sql<SqlBool>`status || '' = 'queued'`).returning(['id', 'attempts']));

async function claimAll(tx: Tx, claims: Claim[], now: number, events: EventInput[]): Promise<{ ok: boolean; value: unknown }[]> {
  const rows = await claimQueued.all(tx, { ids: listValue(tx, claims.map((c) => c.id)), now });
  const got = new Map(rows.map((r) => [r.id, Number(r.attempts)]));
  return claims.map((c) => {
    const attempts = got.get(c.id);
    if (attempts === undefined) return { ok: true, value: false };
    events.push(c.event(attempts));
    return { ok: true, value: true };
  });
}

/**
 * A batch of results: the replies become sent (or read at once: the customer's read mark is
 * already at or after their time), and their conversations' latest outbound message moves.
 *
 * The read mark is read after the conversations are locked. A read receipt is applied under its
 * conversation's lock (ingest/apply.ts: the mark moves, then the replies already `sent` become
 * read), so either it went first and its mark is seen here, or it comes after and finds these
 * replies `sent`. Read before the lock (as a statement of its own once was), a receipt committed
 * meanwhile fell between the two: its mark unseen here, these replies not yet `sent` there.
 */
async function sentAll(tx: Tx, sents: SentRecord[], now: number, events: EventInput[]): Promise<{ ok: boolean; value: unknown }[]> {
  const results = rowsAs(tx, [['mid', 'text'], ['conv', 'text'], ['pid', 'text'], ['ts', 'bigint']],
    sents.map((s) => [s.id, s.conversationId, s.providerMessageId, s.providerTs]), 'r');
  // The latest send per conversation (a batch holds at most one per conversation; be safe anyway).
  const latest = new Map<string, SentRecord>();
  for (const s of sents) if ((latest.get(s.conversationId)?.providerTs ?? -1) <= s.providerTs) latest.set(s.conversationId, s);
  const convs = rowsAs(tx, [['id', 'text'], ['ts', 'bigint'], ['preview', 'text']], [...latest.values()].map((s) => [s.conversationId, s.providerTs, s.preview]));
  // Expressions over the row, not values read earlier: accepts and ingest update these rows too.
  const moveLatest = (join: RawBuilder<unknown>) => sql`update conversations set
      last_outbound_at = case when coalesce(last_outbound_at, 0) < x.ts then x.ts else last_outbound_at end,
      last_message_preview = case when coalesce(last_message_at, 0) <= x.ts then x.preview else last_message_preview end,
      last_message_at = case when coalesce(last_message_at, 0) < x.ts then x.ts else last_message_at end,
      first_unanswered_at = case when coalesce(last_inbound_at, 0) <= x.ts then null else first_unanswered_at end,
      updated_at = ${now}
    from ${convs}${join} where conversations.id = x.id`;
  const markSent = (mark: RawBuilder<unknown>, from: RawBuilder<unknown>) => sql`update messages set
      status = case when coalesce(${mark}, 0) >= r.ts then 'read' else 'sent' end,
      provider_message_id = r.pid, provider_timestamp = r.ts, next_attempt_at = null, error = null, updated_at = ${now}
    from ${from} where messages.id = r.mid returning messages.id, messages.status`;
  let updated: { id: string; status: string }[];
  if (isPostgres(tx)) {
    // One statement: the rows locked first, in id order (conversationsLockedInOrder), with their
    // read marks as the lock leaves them (the latest committed), then both updates.
    const locked = conversationsLockedInOrder([...latest.keys()], ['customer_read_at']);
    updated = (await sql<{ id: string; status: string }>`with ${locked.cte}, moved as (${moveLatest(locked.join)})
      ${markSent(sql`l.customer_read_at`, sql`${results} left join l on l.id = r.conv`)}`.execute(tx)).rows;
  } else {
    // SQLite has one writer: nothing moves between the two statements.
    updated = (await sql<{ id: string; status: string }>`${markSent(sql`(select customer_read_at from conversations c where c.id = r.conv)`, results)}`.execute(tx)).rows;
    await sql`${moveLatest(sql``)}`.execute(tx);
  }
  const readNow = new Set(updated.filter((r) => r.status === 'read').map((r) => r.id));
  sents.forEach((s) => events.push(...s.events(readNow.has(s.id))));
  return sents.map(() => ({ ok: true, value: undefined }));
}

const registry = new WeakMap<AppContext, Committer>();

/** The process's outbound committer (accepts on SQLite and the sender share it: one writer). */
export function committerFor(ctx: AppContext): Committer {
  let c = registry.get(ctx);
  if (!c) registry.set(ctx, c = new Committer(ctx));
  return c;
}
