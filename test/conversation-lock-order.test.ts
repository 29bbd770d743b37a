import { sql, type CompiledQuery } from 'kysely';
import { describe, expect, it } from 'vitest';
import { postgresLookups } from '../src/ingest/apply.js';
import { takeFirstQuotaAndInsert, takeQuotaAndInsert } from '../src/messaging/accept-batch.js';
import { utcDayStart } from '../src/messaging/queue.js';
import { fileDatabase, TEST_DB } from './helpers/db.js';

/**
 * Postgres: statements that lock several conversations lock them in id order (row-sets.ts
 * conversationsLockedInOrder, the ingest's locked lookup), whatever order their input lists them
 * in; otherwise two batches could each hold a row the other waits for (a deadlock, broken only
 * after a second).
 */
describe(`batched conversation locks are taken in id order (${TEST_DB})`, () => {
  const db = fileDatabase();
  const now = Date.now();

  /**
   * Runs the statement while another transaction holds the lowest id: it must wait for that row
   * before taking any other, so a third transaction can still take the others at once.
   */
  async function waitsForLowestFirst(account: string, compiled: CompiledQuery<unknown>): Promise<void> {
    const pool = db().pool!;
    const holder = await pool.connect();
    const batch = await pool.connect();
    try {
      await holder.query('begin');
      await holder.query(`select id from conversations where id = $1 for update`, [`cv_${account}_1`]);
      await batch.query('begin');
      const running = batch.query(compiled.sql, [...compiled.parameters]);
      for (let i = 0; i < 50; i++) {
        const { rows } = await pool.query(`select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()`);
        if (rows[0].n > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const others = [`cv_${account}_2`, `cv_${account}_3`];
      const free = await pool.query(`select id from conversations where id = any($1) order by id for update nowait`, [others]);
      expect(free.rows.map((r) => r.id)).toEqual(others);
      await holder.query('commit');
      await running;
      await batch.query('commit');
    } finally {
      await holder.query('rollback').catch(() => undefined);
      await batch.query('rollback').catch(() => undefined);
      holder.release();
      batch.release();
    }
  }

  /** Three conversations whose external ids sort the other way round from their ids. */
  async function conversations(account: string): Promise<void> {
    await sql`insert into conversations (id, account_id, contact_id, external_id, outbound_since_inbound, created_at, updated_at)
      select 'cv_' || ${account} || '_' || n, ${account}, 'ct_' || n, 'x_' || (4 - n), 0, ${now}, ${now} from generate_series(1, 3) n`.execute(db().db);
  }

  it.skipIf(TEST_DB !== 'postgres')('the accept batch waits for the lowest id before taking any other row', async () => {
    await conversations('acpt');
    // The batch lists the lowest id last.
    const input = ['cv_acpt_3', 'cv_acpt_2', 'cv_acpt_1'].map((id) => ({ id, seen_count: 0, seen_inbound: null, take: 1 }));
    await waitsForLowestFirst('acpt', takeQuotaAndInsert.bound(db().db, { input: JSON.stringify(input), ids: input.map((x) => x.id), now, rows: '[]' }));
    const counts = await db().db.selectFrom('conversations').select(['id', 'outbound_since_inbound']).where('account_id', '=', 'acpt').orderBy('id').execute();
    expect(counts.map((c) => Number(c.outbound_since_inbound))).toEqual([1, 1, 1]);
  });

  it.skipIf(TEST_DB !== 'postgres')('so does the write of first replies of the day', async () => {
    await conversations('first');
    const input = ['cv_first_3', 'cv_first_2', 'cv_first_1'].map((id) => ({ id, account_id: 'first', seen_count: 0, seen_inbound: null, take: 1 }));
    await waitsForLowestFirst('first', takeFirstQuotaAndInsert.bound(db().db, {
      input: JSON.stringify(input), ids: input.map((x) => x.id), accountIds: ['first'], day: utcDayStart(now - 86_400_000), cap: 3, now, rows: '[]',
    }));
    const counts = await db().db.selectFrom('conversations').select(['id', 'outbound_since_inbound']).where('account_id', '=', 'first').orderBy('id').execute();
    expect(counts.map((c) => Number(c.outbound_since_inbound))).toEqual([1, 1, 1]);
  });

  it.skipIf(TEST_DB !== 'postgres')('so does the ingest\'s locked lookup, whatever the order of the external ids', async () => {
    await conversations('ingest');
    // x_1 < x_2 < x_3 are cv_ingest_3, _2, _1: in external-id order the lowest id comes last.
    await waitsForLowestFirst('ingest', postgresLookups.conversations('ingest', ['x_1', 'x_2', 'x_3'], true).compile(db().db));
  });
});
