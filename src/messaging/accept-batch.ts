import { sql } from 'kysely';
import type { AppContext } from '../context.js';
import { Batches } from '../core/batches.js';
import { newId } from '../core/ids.js';
import type { Executor } from '../db/database.js';
import type { ConversationRow, MessageRow } from './views.js';
import type { WindowPolicy } from '../providers/types.js';
import { windowAt } from './window.js';

/**
 * Postgres: accepts are coalesced. Every statement is a round trip to another process and every
 * commit a disk flush, and on a busy server those cost more than the work itself; so the accepts
 * that arrive together share one read of their conversations and one statement that takes their
 * quota and inserts them.
 *
 * Correctness does not rest on the batching: the write takes a conversation's quota only if the
 * conversation is still as it was read (its quota count and its last customer message, all the
 * window policy looks at). Whatever the batch cannot settle (the conversation changed, a reply
 * would be over the limit, the statement failed) comes back as "not written", and the caller takes
 * the locking transaction, which decides it exactly.
 */

export type ConversationForAccept = ConversationRow & { account_status: string; status_reason: string | null; business_id: string };

/** Conversations with what accepting a reply checks of their account. */
export function conversationsForAccept(db: Executor) {
  return db.selectFrom('conversations').innerJoin('accounts', 'accounts.id', 'conversations.account_id')
    .selectAll('conversations').select(['accounts.status as account_status', 'accounts.status_reason', 'accounts.external_id as business_id']);
}

export interface PendingAccept {
  /** The conversation as this request read it and checked it. */
  seen: ConversationRow;
  /** The reply to insert; its id is given when the batch is written. */
  row: MessageRow;
  policy: WindowPolicy;
  repliedBefore: boolean;
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


export class AcceptBatcher {
  private readonly reads: Coalescer<string, ConversationForAccept | undefined>;
  private readonly writes: Coalescer<PendingAccept, boolean>;

  constructor(private readonly ctx: AppContext) {
    this.reads = new Coalescer((ids) => this.readAll(ids));
    this.writes = new Coalescer((items) => this.writeAll(items));
  }

  /** The conversation with its account's status, read together with the others asked for meanwhile. */
  conversation(id: string): Promise<ConversationForAccept | undefined> {
    return this.reads.submit(id);
  }

  /** True when the reply is written (quota taken, row inserted, `row.id` set); false: take the locking path. */
  write(item: PendingAccept): Promise<boolean> {
    return this.writes.submit(item);
  }

  private async readAll(ids: string[]): Promise<(ConversationForAccept | undefined)[]> {
    const rows = await conversationsForAccept(this.ctx.database.db)
      .where('conversations.id', '=', sql<string>`any(${[...new Set(ids)]}::text[])`).execute();
    const byId = new Map(rows.map((r) => [r.id, r]));
    return ids.map((id) => byId.get(id));
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
    const columns = Object.keys(rows[0]) as (keyof MessageRow)[];
    const now = Math.max(...items.map((item) => item.now));
    let written: Set<string>;
    try {
      const res = await sql<{ id: string }>`with input as (
          select * from jsonb_to_recordset(${JSON.stringify(input)}::jsonb) as x(id text, seen_count bigint, seen_inbound bigint, take bigint)
        ), taken as (
          -- (The id list lets the planner go through the primary key: it cannot see into the JSON.)
          update conversations c set outbound_since_inbound = c.outbound_since_inbound + x.take, updated_at = ${now}
          from input x
          where c.id = any(${input.map((x) => x.id)}::text[])
            and c.id = x.id and c.outbound_since_inbound = x.seen_count and c.last_inbound_at is not distinct from x.seen_inbound
          returning c.id
        )
        insert into messages (${sql.join(columns.map((c) => sql.id(c)))})
        select ${sql.join(columns.map((c) => sql.ref(`m.${c}`)))} from jsonb_populate_recordset(null::messages, ${JSON.stringify(rows)}::jsonb) m
        where m.conversation_id in (select id from taken)
        returning id`.execute(this.ctx.database.db);
      written = new Set(res.rows.map((r) => r.id));
    } catch (err) {
      // (An Idempotency-Key used twice, for one.) Each reply is then decided on its own.
      this.ctx.log.debug({ err, size: rows.length }, 'batched accept failed; taking the locking path for each');
      written = new Set();
    }
    return items.map((item, i) => planned.has(i) && written.has(item.row.id));
  }
}

const registry = new WeakMap<AppContext, AcceptBatcher>();

export function acceptBatcherFor(ctx: AppContext): AcceptBatcher {
  let b = registry.get(ctx);
  if (!b) registry.set(ctx, b = new AcceptBatcher(ctx));
  return b;
}
