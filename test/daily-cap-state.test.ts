import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../src/db/database.js';
import { migrate } from '../src/db/migrate.js';
import { idFloor } from '../src/core/ids.js';
import { conversationsRepliedToday, DAY_MS, repliedToday, utcDayStart } from '../src/messaging/queue.js';
import { fileDatabase, freshStorage, TEST_DB, type TestStorage } from './helpers/db.js';

/**
 * The daily cap's state on each conversation (migration 006), kept by triggers on messages whatever
 * writes them: a reply counts on the UTC day it was made until it fails or is deleted, and a
 * conversation takes one of its account's slots that day while it has one.
 */
describe(`the daily cap's state on conversations (${TEST_DB})`, () => {
  const now = Date.now();
  const today = utcDayStart(now);
  let seq = 0;
  /** A message id made at `at`, each new. */
  const idAt = (at: number) => `${idFloor('msg', at).slice(0, -4)}${String(++seq).padStart(4, '0')}`;

  async function conversations(db: Database, account: string, n: number): Promise<void> {
    await sql`insert into accounts (id, provider, external_id, status, created_at, updated_at) values (${account}, 'tiktok', ${`biz_${account}`}, 'active', ${now}, ${now})`.execute(db.db);
    for (let i = 1; i <= n; i++) {
      await sql`insert into conversations (id, account_id, contact_id, external_id, outbound_since_inbound, created_at, updated_at)
        values (${`${account}_c${i}`}, ${account}, ${`ct_${i}`}, ${`${account}_x${i}`}, 0, ${now}, ${now})`.execute(db.db);
    }
  }

  async function message(db: Database, conversation: string, account: string, opts: { at?: number; direction?: string; status?: string } = {}): Promise<string> {
    const at = opts.at ?? now;
    const id = idAt(at);
    await sql`insert into messages (id, conversation_id, account_id, direction, type, text, source, status, counted_in_window, created_at, updated_at)
      values (${id}, ${conversation}, ${account}, ${opts.direction ?? 'outbound'}, 'text', 'hi', 'api', ${opts.status ?? 'queued'}, 1, ${at}, ${at})`.execute(db.db);
    return id;
  }

  const setStatus = (db: Database, id: string, status: string) => sql`update messages set status = ${status} where id = ${id}`.execute(db.db);
  const row = (db: Database, id: string) => db.db.selectFrom('conversations').select(['replied_day', 'replies_that_day']).where('id', '=', id).executeTakeFirstOrThrow();
  const state = async (db: Database, id: string) => {
    const r = await row(db, id);
    return { day: r.replied_day === null ? null : Number(r.replied_day), replies: Number(r.replies_that_day) };
  };

  describe('kept by triggers', () => {
    const db = fileDatabase();

    it('counts replies that are not failed, per conversation, on the day they were made', async () => {
      await conversations(db(), 'a', 3);
      const first = await message(db(), 'a_c1', 'a');
      const second = await message(db(), 'a_c1', 'a', { status: 'sent' });
      await message(db(), 'a_c2', 'a', { direction: 'inbound', status: 'received' });
      await message(db(), 'a_c3', 'a', { at: now - DAY_MS });
      expect(await state(db(), 'a_c1')).toEqual({ day: today, replies: 2 });
      expect(await state(db(), 'a_c2')).toEqual({ day: null, replies: 0 });
      expect(await state(db(), 'a_c3')).toEqual({ day: today - DAY_MS, replies: 1 });
      expect(await conversationsRepliedToday(db().db, 'a', now)).toBe(1);
      expect(repliedToday(await row(db(), 'a_c3'), now)).toBe(false);

      // A status change other than to or from failed counts nothing.
      await setStatus(db(), first, 'sending');
      await setStatus(db(), first, 'sent');
      expect(await state(db(), 'a_c1')).toEqual({ day: today, replies: 2 });

      // The conversation's replies fail one by one: the slot is given back with the last.
      await setStatus(db(), first, 'failed');
      expect(repliedToday(await row(db(), 'a_c1'), now)).toBe(true);
      await setStatus(db(), second, 'failed');
      expect(await state(db(), 'a_c1')).toEqual({ day: today, replies: 0 });
      expect(repliedToday(await row(db(), 'a_c1'), now)).toBe(false);
      expect(await conversationsRepliedToday(db().db, 'a', now)).toBe(0);

      // Un-failed (a reply sent again), it counts again; deleted (an echo its reply adopted), no longer.
      await setStatus(db(), second, 'queued');
      expect(await conversationsRepliedToday(db().db, 'a', now)).toBe(1);
      await sql`delete from messages where id = ${second}`.execute(db().db);
      expect(await conversationsRepliedToday(db().db, 'a', now)).toBe(0);

      // A reply inserted failed never counted; a new day starts from one.
      await message(db(), 'a_c3', 'a', { status: 'failed' });
      expect(await state(db(), 'a_c3')).toEqual({ day: today - DAY_MS, replies: 1 });
      await message(db(), 'a_c3', 'a');
      expect(await state(db(), 'a_c3')).toEqual({ day: today, replies: 1 });
      expect(await conversationsRepliedToday(db().db, 'a', now)).toBe(1);
      expect(await conversationsRepliedToday(db().db, 'a', now - DAY_MS)).toBe(0);
    });
  });

  describe('on upgrade', () => {
    const storages: TestStorage[] = [];
    const databases: Database[] = [];
    afterEach(async () => {
      for (const d of databases.splice(0)) await d.close();
      for (const s of storages.splice(0)) await s.drop();
    });

    it("counts today's replies made before the migration", async () => {
      const storage = await freshStorage();
      storages.push(storage);
      const db = await openDatabase({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl, migrate: false });
      databases.push(db);
      await migrate(db, { to: '005_partial_queue_indexes' });
      await conversations(db, 'b', 4);
      await message(db, 'b_c1', 'b');
      await message(db, 'b_c1', 'b', { status: 'read' });
      await message(db, 'b_c2', 'b', { status: 'failed' });
      await message(db, 'b_c3', 'b', { at: now - DAY_MS });
      await message(db, 'b_c4', 'b', { direction: 'inbound', status: 'received' });
      await migrate(db);
      expect(await state(db, 'b_c1')).toEqual({ day: today, replies: 2 });
      for (const c of ['b_c2', 'b_c3', 'b_c4']) expect(await state(db, c)).toEqual({ day: null, replies: 0 });
      expect(await conversationsRepliedToday(db.db, 'b', now)).toBe(1);
    });
  });
});
