import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { firstReplies } from '../src/messaging/accept-batch.js';
import { idFloor } from '../src/core/ids.js';
import { utcDayStart } from '../src/messaging/queue.js';
import { MESSAGE_COLUMNS } from '../src/messaging/views.js';
import { fileDatabase, TEST_DB } from './helpers/db.js';

/**
 * Postgres: the batched write of first replies of the day (firstReplies: the accounts locked, then
 * one statement) takes its accounts' daily caps as counted by the statement itself, after the
 * locks, not as its requests read them: an account whose new conversations would not all fit writes
 * nothing (the locking path then decides each), a conversation already replied to today takes no
 * slot, a failed reply frees its slot, batches racing for one account count each other, and each
 * conversation still takes its quota only if it is as its requests read it.
 */
describe(`first replies of the day, batched (${TEST_DB})`, () => {
  const db = fileDatabase();
  const now = Date.now();
  const floor = idFloor('msg', utcDayStart(now));
  let seq = 0;
  /** A reply id of today, each new. */
  const nextId = () => `${floor.slice(0, -4)}${String(++seq).padStart(4, '0')}`;

  async function account(id: string, conversations: number): Promise<void> {
    await sql`insert into accounts (id, provider, external_id, status, created_at, updated_at) values (${id}, 'tiktok', ${`biz_${id}`}, 'active', ${now}, ${now})`.execute(db().db);
    await sql`insert into conversations (id, account_id, contact_id, external_id, outbound_since_inbound, last_inbound_at, created_at, updated_at)
      select ${id} || '_c' || n, ${id}, 'ct_' || n, ${id} || '_x' || n, 0, ${now}, ${now}, ${now} from generate_series(1, ${conversations}) n`.execute(db().db);
  }

  /** A reply of today, already written. */
  async function replied(conversationId: string, accountId: string, status = 'sent'): Promise<void> {
    const id = nextId();
    await sql`insert into messages (id, conversation_id, account_id, direction, type, text, source, status, counted_in_window, created_at, updated_at)
      values (${id}, ${conversationId}, ${accountId}, 'outbound', 'text', 'earlier', 'api', ${status}, 1, ${now}, ${now})`.execute(db().db);
  }

  function reply(conversationId: string, accountId: string): Record<string, unknown> {
    const row: Record<string, unknown> = Object.fromEntries(MESSAGE_COLUMNS.map((c) => [c, null]));
    Object.assign(row, {
      id: nextId(), conversation_id: conversationId, account_id: accountId, direction: 'outbound',
      type: 'text', text: 'hello', source: 'api', status: 'queued', attempts: 0, next_attempt_at: now, counted_in_window: 1, created_at: now, updated_at: now,
    });
    return row;
  }

  /** Runs the batch's write on these conversations (each seen with no quota used); the conversations of the replies written. */
  async function write(convs: [conversation: string, account: string, seenCount?: number][], cap: number): Promise<string[]> {
    const input = convs.map(([id, account_id, seen = 0]) => ({ id, account_id, seen_count: seen, seen_inbound: now, take: 1 }));
    const rows = convs.map(([id, account]) => reply(id, account));
    const accountIds = [...new Set(convs.map(([, a]) => a))].sort();
    const written = new Set(await firstReplies.call<string>(db().db, {
      input: JSON.stringify(input), ids: input.map((x) => x.id), accountIds, day: utcDayStart(now), cap, now, rows: JSON.stringify(rows),
    }));
    return rows.filter((r) => written.has(r.id as string)).map((r) => r.conversation_id as string);
  }

  it.skipIf(TEST_DB !== 'postgres')('an account whose new conversations would go over its cap writes none of them; the others write theirs', async () => {
    await account('full', 6);
    await account('roomy', 2);
    for (const c of ['full_c1', 'full_c2', 'full_c3']) await replied(c, 'full');
    // cap 4: full has used 3, and asks for 2 new ones (c4, c5) and one it already replied to (c1).
    expect(await write([['full_c4', 'full'], ['full_c1', 'full'], ['full_c5', 'full'], ['roomy_c1', 'roomy']], 4)).toEqual(['roomy_c1']);
    const untouched = await db().db.selectFrom('conversations').select('outbound_since_inbound').where('account_id', '=', 'full').execute();
    expect(untouched.every((c) => Number(c.outbound_since_inbound) === 0)).toBe(true);
  });

  it.skipIf(TEST_DB !== 'postgres')('a conversation already replied to today takes no slot, a failed reply frees its slot', async () => {
    await account('edge', 4);
    await replied('edge_c1', 'edge');
    await replied('edge_c2', 'edge', 'failed');
    // cap 2: edge_c1 is replied (1 used); edge_c1 again needs no slot, edge_c2 (failed earlier) takes the second.
    expect(await write([['edge_c1', 'edge'], ['edge_c2', 'edge']], 2)).toEqual(['edge_c1', 'edge_c2']);
    // Now 2 used: a third conversation is over.
    expect(await write([['edge_c3', 'edge']], 2)).toEqual([]);
  });

  it.skipIf(TEST_DB !== 'postgres')('a conversation that changed since its requests read it takes nothing', async () => {
    await account('moved', 2);
    await sql`update conversations set outbound_since_inbound = 1 where id = 'moved_c1'`.execute(db().db);
    expect(await write([['moved_c1', 'moved', 0], ['moved_c2', 'moved', 0]], 10)).toEqual(['moved_c2']);
    const counts = await db().db.selectFrom('conversations').select(['id', 'outbound_since_inbound']).where('account_id', '=', 'moved').orderBy('id').execute();
    expect(counts.map((c) => Number(c.outbound_since_inbound))).toEqual([1, 1]);
  });

  it.skipIf(TEST_DB !== 'postgres')('batches of one account racing each other count each other: the cap holds', async () => {
    await account('race', 4);
    await replied('race_c1', 'race');
    // cap 2, one used: of two batches each asking for a new conversation, the one that waits for
    // the account's lock must see the other's reply, committed after it began. The conversations are
    // held too: a statement that had begun before the account was free would wait there, with a
    // snapshot from before the other's reply. (Connections opened first: both batches start at once.)
    await Promise.all([1, 2, 3].map(() => sql`select pg_sleep(0.05)`.execute(db().db)));
    let batches: Promise<string[]>[] = [];
    await db().db.transaction().execute(async (tx) => {
      await sql`select id from accounts where id = 'race' for update`.execute(tx);
      await sql`select id from conversations where id in ('race_c2', 'race_c3') for update`.execute(tx);
      batches = [write([['race_c2', 'race']], 2), write([['race_c3', 'race']], 2)];
      await new Promise((resolve) => setTimeout(resolve, 150));
    });
    const written = (await Promise.all(batches)).flat();
    expect(written).toHaveLength(1);
    const { rows } = await sql<{ n: number }>`select count(distinct conversation_id)::int as n from messages where account_id = 'race' and direction = 'outbound'`.execute(db().db);
    expect(rows[0].n).toBe(2);
  });
});
