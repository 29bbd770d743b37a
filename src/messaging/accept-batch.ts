import { sql, type RawBuilder } from 'kysely';
import type { AppContext } from '../context.js';
import { Batches } from '../core/batches.js';
import { newId } from '../core/ids.js';
import type { Executor } from '../db/database.js';
import { prepared } from '../db/prepared.js';
import { MESSAGE_COLUMNS, type ConversationRow, type MessageRow } from './views.js';
import type { WindowPolicy } from '../providers/types.js';
import { conversationsRepliedTodayByAccount, idFloor, repliedByAccount, utcDayStart } from './queue.js';
import { runScript } from '../db/pg-script.js';
import { conversationsLockedInOrder } from '../db/row-sets.js';
import { windowAt } from './window.js';

/**
 * Postgres: accepts are coalesced. Every statement is a round trip to another process and every
 * commit a disk flush, and on a busy server those cost more than the work itself; so the accepts
 * that arrive together share one read of their conversations and one statement that takes their
 * quota and inserts them.
 *
 * Correctness does not rest on the batching: the write takes a conversation's quota only if the
 * conversation is still as it was read (its quota count and its last customer message, all the
 * window policy looks at). A conversation's first reply of the (UTC) day also takes one of the
 * account's daily conversations, a count over many rows that no compare-and-set can guard: those
 * replies are written together in one transaction under the locks of their accounts, then their
 * conversations (the order every accept locks in), and decided exactly as the locking path decides
 * one. Whatever a batch cannot settle (the conversation changed, a reply would be over a limit, the
 * statement failed) comes back as "not written", and the caller takes the locking transaction,
 * which decides it exactly (and says why it refuses).
 */

export type ConversationForAccept = ConversationRow & { account_status: string; status_reason: string | null; business_id: string };

/** Conversations with what accepting a reply checks of their account. */
export function conversationsForAccept(db: Executor) {
  return db.selectFrom('conversations').innerJoin('accounts', 'accounts.id', 'conversations.account_id')
    .selectAll('conversations').select(['accounts.status as account_status', 'accounts.status_reason', 'accounts.external_id as business_id']);
}

/** What the account has used of its daily cap. */
export interface DailyCapView {
  /** Start (ms) of the UTC day counted. */
  day: number;
  /** Conversations the account replied to that day (replies queued included, failed ones not); counted only when repliedToday is false. */
  used: number;
  /** Whether this conversation is one of them. */
  repliedToday: boolean;
}

export type ConversationWithCap = ConversationForAccept & { cap: DailyCapView | null };

export interface PendingAccept {
  /** The conversation as this request read it and checked it. */
  seen: ConversationWithCap;
  /** The reply to insert; its id is given when the batch is written. */
  row: MessageRow;
  policy: WindowPolicy;
  repliedBefore: boolean;
  /** The conversation's first reply today as far as the caller knows: it may take a daily-cap slot. */
  newToday: boolean;
  now: number;
}

const MAX_BATCH = 200;

/** Runs `run` over the keys submitted together (see Batches) and hands each caller its value. */
class Coalescer<K, V> {
  private readonly batches: Batches<{ key: K; resolve: (v: V) => void; reject: (e: unknown) => void }>;

  constructor(run: (keys: K[]) => Promise<V[]>) {
    this.batches = new Batches(async (batch) => {
      try {
        const values = await run(batch.map((b) => b.key));
        batch.forEach((b, i) => b.resolve(values[i]));
      } catch (err) {
        batch.forEach((b) => b.reject(err));
      }
    }, { parallel: 2, maxBatch: MAX_BATCH });
  }

  submit(key: K): Promise<V> {
    return new Promise<V>((resolve, reject) => this.batches.push({ key, resolve, reject }));
  }
}

interface ReadKey { id: string; capAt: number | null }

/**
 * The conversations `ids` with their accounts; for those in `counted`, whether they have a reply
 * since `floor` (the UTC day's first id) and, when not, how many conversations their account has.
 * Replies of the day are found through messages_conversation (conversation_id, id) and
 * messages_outbound_account (account_id, id). The account's (costlier) count is taken only for
 * conversations asked for that have no reply yet today. (A scalar subquery, not EXISTS: the planner
 * may turn EXISTS into a hash of every reply of the day.)
 */
export const conversationsWithCap = prepared<{ ids: string[]; counted: string[]; floor: string }>()((db, $) => {
  const todays = (by: string) => sql`from messages m where ${sql.raw(by)} and m.direction = 'outbound' and m.id >= ${$('floor')} and m.status <> 'failed'`;
  const asked = sql`conversations.id = any(${$('counted')}::text[])`;
  // The account too, though the conversation implies it. With only the conversation named and
  // statistics taken before there were replies (a new store: autovacuum analyzes again only after
  // a tenth of a table changed), the generic plan scanned messages_outbound_account on `id >= floor`
  // alone, every account's replies of the day for each conversation asked: up to 1.1 s a batch in
  // bench:outbound. test/stale-statistics-plans.test.ts keeps it out.
  const replied = sql`coalesce((select true ${todays('m.account_id = conversations.account_id and m.conversation_id = conversations.id')} limit 1), false)`;
  return conversationsForAccept(db)
    .select([
      sql<boolean | null>`case when ${asked} then ${replied} end`.as('cap_replied'),
      sql<number | null>`case when ${asked} and not ${replied} then (select count(distinct m.conversation_id) ${todays('m.account_id = conversations.account_id')}) end`.as('cap_used'),
    ])
    .where('conversations.id', '=', sql<string>`any(${$('ids')}::text[])`);
});

export class AcceptBatcher {
  private readonly reads: Coalescer<ReadKey, ConversationWithCap | undefined>;
  private readonly writes: Coalescer<PendingAccept, boolean>;
  private readonly firstWrites: Coalescer<PendingAccept, boolean>;

  constructor(private readonly ctx: AppContext) {
    this.reads = new Coalescer((keys) => this.readAll(keys));
    this.writes = new Coalescer((items) => this.writeAll(items));
    this.firstWrites = new Coalescer((items) => this.writeFirsts(items));
  }

  /**
   * The conversation with its account's status, read together with the others asked for meanwhile;
   * with `capAt` (a time), also the account's daily-cap use on that UTC day (null if the batch
   * counted another day: rare, around midnight).
   */
  conversation(id: string, capAt: number | null): Promise<ConversationWithCap | undefined> {
    return this.reads.submit({ id, capAt });
  }

  /** True when the reply is written (quota taken, row inserted, `row.id` set); false: take the locking path. */
  write(item: PendingAccept): Promise<boolean> {
    return (item.newToday ? this.firstWrites : this.writes).submit(item);
  }

  private async readAll(keys: ReadKey[]): Promise<(ConversationWithCap | undefined)[]> {
    const capAt = keys.find((k) => k.capAt !== null)?.capAt ?? null;
    const day = capAt === null ? null : utcDayStart(capAt);
    const counted = keys.filter((k) => k.capAt !== null && utcDayStart(k.capAt) === day).map((k) => k.id);
    const rows = await conversationsWithCap.all(this.ctx.database.generic ?? this.ctx.database.db, {
      ids: [...new Set(keys.map((k) => k.id))], counted, floor: idFloor('msg', day ?? 0),
    });
    const byId = new Map(rows.map(({ cap_used, cap_replied, ...conv }) => [conv.id, {
      ...conv,
      cap: day === null || cap_replied === null ? null : { day, used: Number(cap_used ?? 0), repliedToday: cap_replied },
    }]));
    return keys.map((k) => {
      const conv = byId.get(k.id);
      return conv && (k.capAt === null || utcDayStart(k.capAt) !== day) ? { ...conv, cap: null } : conv;
    });
  }

  private async writeAll(items: PendingAccept[]): Promise<boolean[]> {
    // Per conversation: the replies that took quota in arrival order, from the state they read.
    const groups = new Map<string, { seen: ConversationRow; members: number[] }>();
    const planned = new Set<number>();
    items.forEach((item, i) => {
      let g = groups.get(item.seen.id);
      if (!g) groups.set(item.seen.id, g = { seen: item.seen, members: [] });
      // Read another version of the conversation than the batch's first: let the lock decide.
      if (g.seen.outbound_since_inbound !== item.seen.outbound_since_inbound || g.seen.last_inbound_at !== item.seen.last_inbound_at) return;
      const w = windowAt(item.policy, { lastInboundAt: g.seen.last_inbound_at, outboundSinceInbound: g.seen.outbound_since_inbound + g.members.length, repliedBefore: item.repliedBefore }, item.now);
      if (w.blocked) return; // over the limit counting this batch's earlier replies: the lock decides (and refuses)
      item.row.id = newId('msg', item.now);
      g.members.push(i);
      planned.add(i);
    });
    if (!planned.size) return items.map(() => false);
    const input = [...groups.values()].filter((g) => g.members.length)
      .map((g) => ({ id: g.seen.id, seen_count: g.seen.outbound_since_inbound, seen_inbound: g.seen.last_inbound_at, take: g.members.length }));
    const rows = items.filter((_, i) => planned.has(i)).map((item) => item.row);
    const now = Math.max(...items.map((item) => item.now));
    let written: Set<string>;
    try {
      const res = await takeQuotaAndInsert.execute(this.ctx.database.generic ?? this.ctx.database.db, {
        input: JSON.stringify(input), ids: input.map((x) => x.id), now, rows: JSON.stringify(rows),
      });
      written = new Set(res.rows.map((r) => r.id));
    } catch (err) {
      // (An Idempotency-Key used twice, for one.) Each reply is then decided on its own.
      this.ctx.log.debug({ err, size: rows.length }, 'batched accept failed; taking the locking path for each');
      written = new Set();
    }
    return items.map((item, i) => planned.has(i) && written.has(item.row.id));
  }

  /**
   * First replies of the day: decided together under the locks of their accounts, then their
   * conversations, exactly as the locking path decides one. What would be refused comes back
   * false (the locking path refuses it with its reason).
   *
   * Two round trips (pg-script.ts): the transaction's start, the locks and the read of the day's
   * replies in one; the write and the commit in the other. The accounts stay locked from the first
   * to the commit: as Kysely's one statement per round trip, that was four round trips and a commit.
   */
  private async writeFirsts(items: PendingAccept[]): Promise<boolean[]> {
    const day = utcDayStart(items[0].now);
    const cap = this.ctx.config.tiktokDailyCap;
    const written = items.map(() => false);
    const { db, pool } = this.ctx.database;
    const client = await pool!.connect();
    let broken: Error | undefined;
    try {
      const accountIds = [...new Set(items.map((item) => item.row.account_id))].sort();
      const conversationIds = [...new Set(items.map((item) => item.seen.id))].sort();
      const [, , locked, repliedRows] = await runScript(client, [
        'begin',
        lockAccounts.bound(db, { ids: accountIds }),
        lockConversations.bound(db, { ids: conversationIds }),
        // A statement of its own, after the locks: its snapshot sees every reply committed before them.
        conversationsRepliedTodayByAccount.bound(db, { accountIds, floor: idFloor('msg', day) }),
      ]);
      const fresh = new Map((locked as unknown as ConversationRow[]).map((c) => [c.id, c]));
      const replied = repliedByAccount(accountIds, repliedRows as { account_id: string; conversation_id: string }[]);
      const taken = new Map<string, number>();
      items.forEach((item, i) => {
        const conv = fresh.get(item.seen.id);
        if (!conv || utcDayStart(item.now) !== day) return;
        const earlier = taken.get(conv.id) ?? 0;
        const w = windowAt(item.policy, { lastInboundAt: conv.last_inbound_at, outboundSinceInbound: conv.outbound_since_inbound + earlier, repliedBefore: item.repliedBefore }, item.now);
        if (w.blocked) return;
        const today = replied.get(item.row.account_id)!;
        if (!today.has(conv.id)) {
          if (today.size >= cap) return;
          today.add(conv.id);
        }
        item.row.id = newId('msg', item.now);
        taken.set(conv.id, earlier + 1);
        written[i] = true;
      });
      if (!taken.size) {
        await runScript(client, ['commit']);
        return written;
      }
      const counts = [...taken].map(([id, k]) => ({ id, count: fresh.get(id)!.outbound_since_inbound + k }));
      const write = setQuotaAndInsert.bound(db, {
        counts: JSON.stringify(counts), ids: counts.map((x) => x.id), now: Math.max(...items.map((item) => item.now)),
        rows: JSON.stringify(items.filter((_, i) => written[i]).map((item) => item.row)),
      });
      await runScript(client, [write, 'commit']);
      return written;
    } catch (err) {
      this.ctx.log.debug({ err, size: items.length }, 'batched first replies failed; taking the locking path for each');
      // Whatever the script left (an aborted transaction, or none): a connection that cannot roll back is not reused.
      await client.query('rollback').catch((e: Error) => { broken = e; });
      return items.map(() => false);
    } finally {
      client.release(broken);
    }
  }
}

/** `insert into messages` of the rows in `rows` (a JSON array of MessageRow) as `m`, filtered by `where`; returns their ids. */
function insertMessages(rows: unknown, where: RawBuilder<unknown>) {
  const columns = sql.raw(MESSAGE_COLUMNS.map((c) => `"${c}"`).join(', '));
  const values = sql.raw(MESSAGE_COLUMNS.map((c) => `m."${c}"`).join(', '));
  return sql`insert into messages (${columns})
    select ${values} from jsonb_populate_recordset(null::messages, ${rows}::jsonb) m
    ${where}
    returning id`;
}

/**
 * The batch's quota taken and its replies inserted, one statement: a conversation takes its
 * replies only if it is still as its requests read it (the compare-and-set), and only the replies
 * of conversations that did are inserted. Inputs are JSON: the text is the same whatever the batch.
 */
export const takeQuotaAndInsert = prepared<{ input: string; ids: string[]; now: number; rows: string }>()((_db, $) => {
  const locked = conversationsLockedInOrder($('ids'));
  return sql<{ id: string }>`with input as (
    select * from jsonb_to_recordset(${$('input')}::jsonb) as x(id text, seen_count bigint, seen_inbound bigint, take bigint)
  ), ${locked.cte}, taken as (
    -- (The id list lets the planner go through the primary key: it cannot see into the JSON.)
    update conversations c set outbound_since_inbound = c.outbound_since_inbound + x.take, updated_at = ${$('now')}
    from input x${locked.join}
    where c.id = any(${$('ids')}::text[])
      and c.id = x.id and c.outbound_since_inbound = x.seen_count and c.last_inbound_at is not distinct from x.seen_inbound
    returning c.id
  )
  ${insertMessages($('rows'), sql`where m.conversation_id in (select id from taken)`)}`;
});

/** First replies of the day, decided under the locks: their conversations' new counts set and the replies inserted. */
const setQuotaAndInsert = prepared<{ counts: string; ids: string[]; now: number; rows: string }>()((_db, $) => sql<{ id: string }>`with input as (
    select * from jsonb_to_recordset(${$('counts')}::jsonb) as x(id text, count bigint)
  ), taken as (
    update conversations c set outbound_since_inbound = x.count, updated_at = ${$('now')}
    from input x where c.id = any(${$('ids')}::text[]) and c.id = x.id
  )
  ${insertMessages($('rows'), sql``)}`);

/** In id order, the order every accept locks in. */
const lockAccounts = prepared<{ ids: string[] }>()((db, $) =>
  db.selectFrom('accounts').select('id').where('id', '=', sql<string>`any(${$('ids')}::text[])`).orderBy('id').forUpdate());
const lockConversations = prepared<{ ids: string[] }>()((db, $) =>
  db.selectFrom('conversations').selectAll().where('id', '=', sql<string>`any(${$('ids')}::text[])`).orderBy('id').forUpdate());

const registry = new WeakMap<AppContext, AcceptBatcher>();

export function acceptBatcherFor(ctx: AppContext): AcceptBatcher {
  let b = registry.get(ctx);
  if (!b) registry.set(ctx, b = new AcceptBatcher(ctx));
  return b;
}
