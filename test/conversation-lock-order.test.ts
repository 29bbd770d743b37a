import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { takeQuotaAndInsert } from '../src/messaging/accept-batch.js';
import { fileDatabase, TEST_DB } from './helpers/db.js';

/**
 * Postgres: statements that update several conversations lock them in id order (row-sets.ts
 * conversationsLockedInOrder), whatever order their input lists them in; otherwise two batches
 * could each hold a row the other waits for (a deadlock, broken only after a second).
 */
describe(`batched conversation updates lock in id order (${TEST_DB})`, () => {
  const db = fileDatabase();

  it.skipIf(TEST_DB !== 'postgres')('waits for the lowest id before taking any other row', async () => {
    const now = Date.now();
    await sql`insert into conversations (id, account_id, contact_id, external_id, outbound_since_inbound, created_at, updated_at)
      select 'cv_lock_' || n, 'acct_lock', 'ct_lock_' || n, 'x_lock_' || n, 0, ${now}, ${now} from generate_series(1, 3) n`.execute(db().db);
    const pool = db().pool!;
    const holder = await pool.connect();
    const batch = await pool.connect();
    try {
      await holder.query('begin');
      await holder.query(`select id from conversations where id = 'cv_lock_1' for update`);
      // The batch lists the lowest id last.
      const input = ['cv_lock_3', 'cv_lock_2', 'cv_lock_1'].map((id) => ({ id, seen_count: 0, seen_inbound: null, take: 1 }));
      const compiled = takeQuotaAndInsert.bound(db().db, { input: JSON.stringify(input), ids: input.map((x) => x.id), now, rows: '[]' });
      await batch.query('begin');
      const running = batch.query(compiled.sql, [...compiled.parameters]);
      // It waits on cv_lock_1 without holding the others: a third transaction can take them at once.
      for (let i = 0; i < 50; i++) {
        const { rows } = await pool.query(`select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()`);
        if (rows[0].n > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const free = await pool.query(`select id from conversations where id in ('cv_lock_2', 'cv_lock_3') order by id for update nowait`);
      expect(free.rows.map((r) => r.id)).toEqual(['cv_lock_2', 'cv_lock_3']);
      await holder.query('commit');
      await running;
      await batch.query('commit');
      const counts = await db().db.selectFrom('conversations').select(['id', 'outbound_since_inbound']).where('account_id', '=', 'acct_lock').orderBy('id').execute();
      expect(counts.map((c) => Number(c.outbound_since_inbound))).toEqual([1, 1, 1]);
    } finally {
      await holder.query('rollback').catch(() => undefined);
      await batch.query('rollback').catch(() => undefined);
      holder.release();
      batch.release();
    }
  });
});
