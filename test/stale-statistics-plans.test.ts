import { CompiledQuery, sql, type RawBuilder } from 'kysely';
import { describe, expect, it } from 'vitest';
import type { Prepared } from '../src/db/prepared.js';
import { conversationsWithCap, takeFirstQuotaAndInsert, takeQuotaAndInsert } from '../src/messaging/accept-batch.js';
import { postgresLookups } from '../src/ingest/apply.js';
import { dueInboundEvents } from '../src/ingest/processor.js';
import { inIndexOrder } from '../src/db/index-order.js';
import { claimQueued } from '../src/messaging/committer.js';
import { idFloor } from '../src/core/ids.js';
import { conversationsOfAccountOn, repliesSentAfter, utcDayStart } from '../src/messaging/queue.js';
import { fileDatabase, TEST_DB } from './helpers/db.js';
import { nodeTypes, plansOn, postgresPlans, tableScans, type PlanNode } from './helpers/plans.js';

/**
 * Postgres plans each run of a prepared statement for its values, or generically once it has run a
 * few times, from the table's statistics. Taken before there were replies (a new store; autovacuum analyzes again only after a
 * tenth of a table changed), they make the replies look absent: the partial index of outbound
 * messages empty, no row `queued`. Plans then read by those: looking for a conversation's reply of
 * the day with only the conversation named scanned every account's replies of the day for each
 * conversation (up to 1.1 s a batch in bench:outbound), and claiming replies by id walked every
 * queued reply through the status index. Each of these statements names what bounds it (its account,
 * its conversation, its ids) so that no plan can read by anything else.
 */
describe(`hot statements keep to their account, conversation or ids under stale statistics (${TEST_DB})`, () => {
  const db = fileDatabase();

  it.skipIf(TEST_DB !== 'postgres')('no scan of messages without the account, the conversation or the ids in its index condition', async () => {
    const now = Date.now();
    const floor = idFloor('msg', utcDayStart(now));
    // 40 accounts × 40 conversations: 24,000 customer messages today, analyzed before 24,000 replies
    // came, the last of each conversation still queued; and 160 accounts more, without conversations (each
    // with its tokens: a page holds about 15 accounts).
    await sql`insert into accounts (id, provider, external_id, status, access_token_enc, refresh_token_enc, created_at, updated_at)
      select 'acct_' || a, 'tiktok', 'biz_' || a, 'active', repeat('t', 200), repeat('r', 200), ${now}, ${now} from generate_series(1, 200) a`.execute(db().db);
    await sql`insert into contacts (id, provider, external_id, created_at, updated_at)
      select 'ct_' || a || '_' || c, 'tiktok', 'u_' || a || '_' || c, ${now}, ${now} from generate_series(1, 40) a, generate_series(1, 40) c`.execute(db().db);
    await sql`insert into conversations (id, account_id, contact_id, external_id, created_at, updated_at)
      select 'conv_' || a || '_' || c, 'acct_' || a, 'ct_' || a || '_' || c, 'x_' || a || '_' || c, ${now}, ${now} from generate_series(1, 40) a, generate_series(1, 40) c`.execute(db().db);
    const messages = (direction: string, from: number) => sql`insert into messages (id, conversation_id, account_id, direction, type, text, source, status, counted_in_window, created_at, updated_at)
      select ${floor.slice(0, -16)} || lpad(to_hex(${from} + a * 10000 + c * 100 + k), 16, '0'), 'conv_' || a || '_' || c, 'acct_' || a, ${direction}, 'text', 'hi', 'api', case when ${direction} = 'outbound' and k = 15 then 'queued' else 'sent' end, 1, ${now}, ${now}
      from generate_series(1, 40) a, generate_series(1, 40) c, generate_series(1, 15) k`.execute(db().db);
    await messages('inbound', 0);
    await sql`analyze`.execute(db().db);
    await messages('outbound', 5_000_000);

    /** The scans of `table` in the plans Postgres may use for a prepared statement (helpers/plans.ts), as "mode: index: condition". */
    const scans = async <P extends object>(table: string, query: Prepared<P, unknown>, params: P) => (await postgresPlans(db().db, query.bound(db().db, params)))
      .flatMap(({ mode, plan }) => tableScans(plan, [table]).map(([index, cond]) => `${mode}: ${index}: ${cond}`));

    const ids = ['conv_1_1', 'conv_2_5', 'conv_3_9'];
    const day = utcDayStart(now);
    const firstInput = [{ id: 'conv_1_1', account_id: 'acct_1', seen_count: 0, seen_inbound: null, take: 1 }, { id: 'conv_7_2', account_id: 'acct_7', seen_count: 0, seen_inbound: null, take: 1 }];
    const firstWrite = { input: JSON.stringify(firstInput), ids: firstInput.map((x) => x.id), accountIds: ['acct_1', 'acct_7'], day, cap: 200, now, rows: '[]' };
    for (const found of [
      await scans('messages', repliesSentAfter, { accountId: 'acct_1', conversationId: 'conv_1_1', floor, after: now - 60_000 }),
      await scans('messages', claimQueued, { ids: [`${floor.slice(0, -16)}${(5_000_000 + 10_000 + 100 + 15).toString(16).padStart(16, '0')}`], now }),
    ]) {
      expect(found.length).toBeGreaterThan(0);
      for (const scan of found) expect(scan).toMatch(/\b(account_id|conversation_id|id) = /);
    }

    // The daily cap reads conversations (migration 006), by their ids or by their account.
    for (const found of [
      await scans('conversations', conversationsWithCap, { ids, counted: ids, day }),
      await scans('conversations', conversationsOfAccountOn, { accountId: 'acct_1', day }),
      await scans('conversations', takeFirstQuotaAndInsert, firstWrite),
    ]) {
      expect(found.length).toBeGreaterThan(0);
      for (const scan of found) expect(scan).toMatch(/: \w+: .*\b(account_id|id) = /);
    }

    // The accept's read looks each conversation's account up by its key: joined, the generic plan
    // (sized for 10 conversations) hashed the whole accounts table on every read.
    const accountScans = await scans('accounts', conversationsWithCap, { ids, counted: ids, day });
    expect(accountScans).toHaveLength(2);
    for (const found of accountScans) expect(found).toMatch(/: accounts_pkey: \(id = conversations\.account_id\)$/);

    // The batched write goes to its conversations by id, in its generic plan (database.ts, `generic`).
    const writeScans = await scans('conversations', takeQuotaAndInsert, { input: JSON.stringify([{ id: 'conv_1_1', seen_count: 0, seen_inbound: null, take: 1 }]), ids: ['conv_1_1'], now, rows: '[]' });
    expect(writeScans.length).toBeGreaterThan(0);
    for (const found of writeScans) expect(found).toMatch(/\bid = /);
  });
});

/**
 * The batched lookups by a list of keys within a scope (the ingest's contacts and conversations, the
 * backfill's stored messages) on a store whose tables were analyzed while empty (a new deployment):
 * `scope = $1 and key in (...)` was planned as a read of the whole scope, filtered by the list.
 */
describe(`batched lookups probe both columns on a store without statistics (${TEST_DB})`, () => {
  const db = fileDatabase();

  it.skipIf(TEST_DB !== 'postgres')('every scan of contacts, conversations and messages names the scope and the key', async () => {
    const now = Date.now();
    await sql`analyze`.execute(db().db);
    await sql`insert into accounts (id, provider, external_id, status, created_at, updated_at) values ('acct_1', 'tiktok', 'biz_1', 'active', ${now}, ${now})`.execute(db().db);
    await sql`insert into contacts (id, provider, external_id, created_at, updated_at)
      select 'ct_' || c, 'tiktok', 'u_' || c, ${now}, ${now} from generate_series(1, 20000) c`.execute(db().db);
    await sql`insert into conversations (id, account_id, contact_id, external_id, created_at, updated_at)
      select 'conv_' || c, 'acct_1', 'ct_' || c, 'x_' || c, ${now}, ${now} from generate_series(1, 20000) c`.execute(db().db);
    await sql`insert into messages (id, conversation_id, account_id, direction, type, text, source, status, counted_in_window, provider_message_id, created_at, updated_at)
      select 'msg_' || lpad(to_hex(c), 16, '0'), 'conv_' || c, 'acct_1', 'inbound', 'text', 'hi', 'tiktok', 'received', 0, 'pm_' || c, ${now}, ${now}
      from generate_series(1, 20000) c`.execute(db().db);

    const keys = (prefix: string) => Array.from({ length: 50 }, (_, i) => `${prefix}${i * 397 + 1}`);
    const scans = async (query: RawBuilder<unknown>) => {
      const compiled = query.compile(db().db);
      const { rows } = await db().db.executeQuery<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(CompiledQuery.raw(`explain (format json) ${compiled.sql}`, [...compiled.parameters]));
      return tableScans(rows[0]['QUERY PLAN'][0].Plan, ['contacts', 'conversations', 'messages']);
    };
    for (const [found, pattern] of [
      [await scans(postgresLookups.contacts('tiktok', keys('u_'))), /provider = .*external_id = /],
      [await scans(postgresLookups.conversations('acct_1', keys('x_'), false)), /account_id = .*external_id = /],
      // Locking: found by both columns, then locked through the primary key (in id order).
      [await scans(postgresLookups.conversations('acct_1', keys('x_'), true)), /account_id = .*external_id = |^conversations_pkey: \(id = ANY/],
      [await scans(postgresLookups.messagesStored('acct_1', keys('pm_'))), /account_id = .*provider_message_id = /],
    ] as const) {
      expect(found.length).toBeGreaterThan(0);
      for (const [index, cond] of found) expect(`${index}: ${cond}`).toMatch(pattern);
    }
    // And the rows are the ones asked for.
    expect((await postgresLookups.contacts('tiktok', ['u_7', 'u_9', 'nobody']).execute(db().db)).rows.map((r) => r.id).sort()).toEqual(['ct_7', 'ct_9']);
    expect((await postgresLookups.messagesStored('acct_1', ['pm_1', 'pm_2', 'pm_none']).execute(db().db)).rows[0].n).toBe(2);
    expect((await postgresLookups.conversations('acct_1', ['x_9', 'x_7', 'nobody'], true).execute(db().db)).rows.map((r) => r.id)).toEqual(['conv_7', 'conv_9']);
  });
});

/**
 * The processor claims pending webhooks in index order (db/index-order.ts). Statistics taken while
 * nothing waited (what autovacuum's analyze almost always sees) say a burst's rows do not exist,
 * and estimating one row, the planner chose between reading them in order through the claim's index
 * and reading all of them through the other partial index and sorting them as a coin toss: after a
 * burst of 140,000 webhooks, processed, vacuumed and analyzed, the next 114,000 were claimed through
 * inbound_events_waiting, every one of them read and sorted for each batch of 500.
 */
describe(`the processor's claim reads in index order under stale statistics (${TEST_DB})`, () => {
  const db = fileDatabase();

  it.skipIf(TEST_DB !== 'postgres')('the processor\'s claim walks inbound_events_due without a sort, in its custom and generic plans', async () => {
    const now = Date.now();
    const webhooks = (from: number, n: number) => sql`insert into inbound_events (provider, dedupe_key, event_type, business_id, body, status, attempts, next_attempt_at, received_at)
      select 'tiktok', 'k_' || i, 'im_receive_msg', 'biz_1', '{"x":1}', 'pending', 0, 0, ${now} from generate_series(${from}::int, ${from + n - 1}::int) i`.execute(db().db);
    await webhooks(1, 140_000);
    await sql`update inbound_events set status = 'processed', processed_at = ${now}`.execute(db().db);
    await sql`vacuum analyze inbound_events`.execute(db().db);
    await webhooks(140_001, 114_000);

    for (const busy of [[], ['biz_2']]) {
      const claim = dueInboundEvents(db().db, now, 500, busy).compile();
      const plans = await inIndexOrder(db(), (tx) => plansOn(tx, claim));
      expect(plans).toHaveLength(2);
      for (const { mode, plan } of plans) {
        expect({ mode, busy, scans: tableScans(plan, ['inbound_events']).map(([index]) => index), sorts: nodeTypes(plan).filter((t) => t.includes('Sort')) })
          .toEqual({ mode, busy, scans: ['inbound_events_due'], sorts: [] });
      }
    }
    // And the batch is the first 500 in arrival order.
    const first = await inIndexOrder(db(), (tx) => dueInboundEvents(tx, now, 500, ['biz_2']).execute());
    expect(first.map((r) => Number(r.seq))).toEqual(Array.from({ length: 500 }, (_, i) => 140_001 + i));
  });
});
