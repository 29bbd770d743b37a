import { sql, type RawBuilder } from 'kysely';
import type { AppContext } from '../context.js';
import { Batches } from '../core/batches.js';
import { newId } from '../core/ids.js';
import { isPostgres, type Executor } from '../db/database.js';
import { prepared, type Binder } from '../db/prepared.js';
import { MESSAGE_COLUMNS, type ConversationRow, type MessageRow } from './views.js';
import type { WindowPolicy } from '../providers/types.js';
import { repliedOn, utcDayStart } from './queue.js';
import { PgRoutine, RoutineUndefined } from '../db/pg-routine.js';
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
 * replies are written together in one transaction under the locks of their accounts (the lock
 * every accept of a first reply takes first), and only if the count, taken under those locks,
 * leaves room for all of the account's new conversations. Whatever a batch cannot settle (the
 * conversation changed, a reply would be over a limit, the statement failed) comes back as "not
 * written", and the caller takes the locking transaction, which decides it exactly (and says why
 * it refuses).
 */

export type ConversationForAccept = ConversationRow & { account_status: string; status_reason: string | null; business_id: string };

/**
 * Conversations with what accepting a reply checks of their account. On Postgres the account is
 * looked up per conversation, by its key (a lateral subquery with a limit, which the planner cannot
 * turn into a join). As a join, the generic plan of a read by an id list (sized 10 by guess) hashed
 * the whole accounts table for the one conversation of most reads, while accounts were a few
 * hundred (with thousands, it looked them up by itself). Measured with pgbench (200 accounts, 4,000
 * conversations), a read by that plan against one by this, round trip included: 0.088 against
 * 0.056–0.065 ms.
 */
export function conversationsForAccept(db: Executor) {
  const columns = ['accounts.status as account_status', 'accounts.status_reason', 'accounts.external_id as business_id'] as const;
  if (!isPostgres(db)) return db.selectFrom('conversations').innerJoin('accounts', 'accounts.id', 'conversations.account_id').selectAll('conversations').select(columns);
  return db.selectFrom('conversations')
    .innerJoinLateral((eb) => eb.selectFrom('accounts').select(columns).whereRef('accounts.id', '=', 'conversations.account_id').limit(1).as('accounts'), (join) => join.onTrue())
    .selectAll('conversations').select(['accounts.account_status', 'accounts.status_reason', 'accounts.business_id']);
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
 * The conversations `ids` with their accounts; for those in `counted`, whether they have a reply on
 * `day` (a column: migration 006) and, when not, how many conversations their account has that day
 * (through conversations_replied_day: at most the cap).
 */
export const conversationsWithCap = prepared<{ ids: string[]; counted: string[]; day: number }>()((db, $) => {
  const asked = sql`conversations.id = any(${$('counted')}::text[])`;
  // (No reply ever: replied_day is null, and so would the comparison be.)
  const replied = sql<boolean>`coalesce(${repliedOn($('day'))}, false)`;
  const used = db.selectFrom('conversations as other').select(sql<number>`count(*)`.as('used'))
    .where('other.account_id', '=', sql.ref<string>('conversations.account_id')).where(repliedOn($('day'), 'other'));
  return conversationsForAccept(db)
    .select([
      sql<boolean | null>`case when ${asked} then ${replied} end`.as('cap_replied'),
      sql<number | null>`case when ${asked} and not ${replied} then (${used}) end`.as('cap_used'),
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
      ids: [...new Set(keys.map((k) => k.id))], counted, day: day ?? 0,
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
    const { planned, input, rows } = planQuota(items);
    if (!planned.size) return items.map(() => false);
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
   * First replies of the day: planned from what their requests read, as writeAll plans, and written
   * in one round trip by a PL/pgSQL function (firstReplies) that locks their accounts, then counts
   * the accounts' days and writes in one statement (takeFirstQuotaAndInsert): the accounts stay
   * locked for the server's work and the commit only. (Reading the day's replies under the locks and
   * deciding here kept them locked across two round trips and this process's turn in between, which
   * under load was most of what a first reply waited for.) What is not written comes back false: the
   * locking path decides it exactly, and says why it refuses.
   */
  private async writeFirsts(items: PendingAccept[]): Promise<boolean[]> {
    const day = utcDayStart(items[0].now);
    // (A batch that straddles midnight: the replies of the later day take the locking path.)
    const { planned, input, rows } = planQuota(items, (item) => utcDayStart(item.now) === day);
    if (!planned.size) return items.map(() => false);
    try {
      const written = new Set(await firstReplies.call<string>(this.ctx.database.generic ?? this.ctx.database.db, {
        input: JSON.stringify(input), ids: input.map((x) => x.id), accountIds: [...new Set(input.map((x) => x.account_id))].sort(),
        day, cap: this.ctx.config.tiktokDailyCap, now: Math.max(...items.map((item) => item.now)), rows: JSON.stringify(rows),
      }));
      return items.map((item, i) => planned.has(i) && written.has(item.row.id));
    } catch (err) {
      if (err instanceof RoutineUndefined) {
        if (!err.reported) this.ctx.log.warn({ err }, 'first replies of the day take the slower locking path until the function can be defined');
        err.reported = true;
      } else {
        this.ctx.log.debug({ err, size: items.length }, 'batched first replies failed; taking the locking path for each');
      }
      return items.map(() => false);
    }
  }
}

interface QuotaInput { id: string; account_id: string; seen_count: number; seen_inbound: number | null; take: number }

/**
 * Per conversation, the replies that take its quota in arrival order, counted from the state their
 * requests read (what the write's compare-and-set expects); each planned reply gets its id. A reply
 * that read another version of its conversation than the batch's first, or would be over the
 * window's limit counting the batch's earlier replies, is left out: the locking path decides it.
 */
function planQuota(items: PendingAccept[], eligible: (item: PendingAccept) => boolean = () => true): { planned: Set<number>; input: QuotaInput[]; rows: MessageRow[] } {
  const groups = new Map<string, { seen: ConversationForAccept; members: number[] }>();
  const planned = new Set<number>();
  items.forEach((item, i) => {
    if (!eligible(item)) return;
    let g = groups.get(item.seen.id);
    if (!g) groups.set(item.seen.id, g = { seen: item.seen, members: [] });
    if (g.seen.outbound_since_inbound !== item.seen.outbound_since_inbound || g.seen.last_inbound_at !== item.seen.last_inbound_at) return;
    const w = windowAt(item.policy, { lastInboundAt: g.seen.last_inbound_at, outboundSinceInbound: g.seen.outbound_since_inbound + g.members.length, repliedBefore: item.repliedBefore }, item.now);
    if (w.blocked) return;
    item.row.id = newId('msg', item.now);
    g.members.push(i);
    planned.add(i);
  });
  const input = [...groups.values()].filter((g) => g.members.length).map((g) => ({
    id: g.seen.id, account_id: g.seen.account_id, seen_count: g.seen.outbound_since_inbound, seen_inbound: g.seen.last_inbound_at, take: g.members.length,
  }));
  return { planned, input, rows: items.filter((_, i) => planned.has(i)).map((item) => item.row) };
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

/** The JSON of planQuota's rows as `input`. */
const quotaInput = (json: unknown) =>
  sql`input as (select * from jsonb_to_recordset(${json}::jsonb) as x(id text, account_id text, seen_count bigint, seen_inbound bigint, take bigint))`;

/**
 * The compare-and-set: each conversation of `input` (those `where` allows) takes its replies only if
 * it is still as its requests read it; then only the replies of conversations that took are
 * inserted. The conversations are locked first, in id order (conversationsLockedInOrder).
 */
function takeAndInsert(ids: unknown, now: unknown, rows: unknown, where: RawBuilder<unknown>) {
  const locked = conversationsLockedInOrder(ids);
  return sql`${locked.cte}, taken as (
    -- (The id list lets the planner go through the primary key: it cannot see into the JSON.)
    update conversations c set outbound_since_inbound = c.outbound_since_inbound + x.take, updated_at = ${now}
    from input x${locked.join}
    where c.id = any(${ids}::text[]) and ${where}
      and c.id = x.id and c.outbound_since_inbound = x.seen_count and c.last_inbound_at is not distinct from x.seen_inbound
    returning c.id
  )
  ${insertMessages(rows, sql`where m.conversation_id in (select id from taken)`)}`;
}

/**
 * The batch's quota taken and its replies inserted, one statement (takeAndInsert). Inputs are JSON:
 * the text is the same whatever the batch.
 */
export const takeQuotaAndInsert = prepared<{ input: string; ids: string[]; now: number; rows: string }>()((_db, $) =>
  sql<{ id: string }>`with ${quotaInput($('input'))}, ${takeAndInsert($('ids'), $('now'), $('rows'), sql`true`)}`);

/**
 * First replies of the day, run after their accounts are locked (its snapshot then sees every reply
 * committed before the locks): takeAndInsert, for the accounts whose daily cap holds, counted now,
 * every conversation of the batch that has no reply today yet. An account that would go over takes
 * nothing here (the locking path then admits up to the cap and refuses the rest, with the reason).
 * The day's conversations are found through conversations_replied_day (migration 006). The counts
 * are grouped once and joined (a hashed anti-join for the new conversations): as subqueries per
 * account and per input row they scanned the whole of `replied` each time, while the accounts stay
 * locked.
 */
const firstQuotaAndInsert = (db: Executor, $: Binder<FirstReplies>) =>
  sql<{ id: string }>`with ${quotaInput($('input'))}, replied as (
    ${db.selectFrom('conversations').select(['account_id', 'id as conversation_id']).where('account_id', '=', sql<string>`any(${$('accountIds')}::text[])`).where(repliedOn($('day')))}
  ), replied_per_account as (
    select account_id, count(*) as n from replied group by account_id
  ), new_per_account as (
    select x.account_id, count(*) as n from input x where not exists (select 1 from replied r where r.conversation_id = x.id) group by x.account_id
  ), fits as (
    select a.id from unnest(${$('accountIds')}::text[]) as a(id)
    left join replied_per_account d on d.account_id = a.id
    left join new_per_account f on f.account_id = a.id
    where coalesce(d.n, 0) + coalesce(f.n, 0) <= ${$('cap')}
  ), ${takeAndInsert($('ids'), $('now'), $('rows'), sql`x.account_id in (select id from fits)`)}`;
export const takeFirstQuotaAndInsert = prepared<FirstReplies>()(firstQuotaAndInsert);

interface FirstReplies { input: string; ids: string[]; accountIds: string[]; day: number; cap: number; now: number; rows: string }

/**
 * takeFirstQuotaAndInsert after the batch's accounts are locked, in id order (the order every accept
 * locks in), as one function (db/pg-routine.ts): the statement's snapshot, taken after the locks,
 * sees every reply committed before them, and its plan is kept.
 */
export const firstReplies = new PgRoutine<FirstReplies>('dmgate_first_replies', {
  input: 'text', ids: 'text[]', accountIds: 'text[]', day: 'bigint', cap: 'bigint', now: 'bigint', rows: 'text',
}, 'setof text', prepared<FirstReplies>()((db, $) => sql`perform 1 from accounts where id = any(${$('accountIds')}::text[]) order by id for update;
  return query ${firstQuotaAndInsert(db, $)}`));

const registry = new WeakMap<AppContext, AcceptBatcher>();

export function acceptBatcherFor(ctx: AppContext): AcceptBatcher {
  let b = registry.get(ctx);
  if (!b) registry.set(ctx, b = new AcceptBatcher(ctx));
  return b;
}
