import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../src/db/database.js';
import { PgRoutine, RoutineUndefined } from '../src/db/pg-routine.js';
import { prepared } from '../src/db/prepared.js';
import { freshStorage, TEST_DB, type TestStorage } from './helpers/db.js';

/**
 * A routine is a PL/pgSQL function made of prepared statements: its named values arrive as the
 * function's arguments and its builder's constants as literals, each statement sees what was
 * committed before it started, and processes starting together define it once.
 */
describe(`statements run as a function (${TEST_DB})`, () => {
  let storage: TestStorage;
  const opened: Database[] = [];
  const open = async () => {
    const database = await openDatabase({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl });
    opened.push(database);
    return database;
  };
  beforeAll(async () => { if (TEST_DB === 'postgres') storage = await freshStorage(); });
  afterAll(async () => {
    for (const d of opened) await d.close();
    await storage?.drop();
  });

  it.skipIf(TEST_DB !== 'postgres')('binds named values and inlines constants, quotes and all', async () => {
    const database = await open();
    const tricky = ["it's", 'back\\slash', '$1 and $2', '"quoted"', '--not a comment', 'a;b', 'naïve 👍'];
    const echo = new PgRoutine<{ word: string; n: number; list: string[] }>('dmgate_test_echo', { word: 'text', n: 'bigint', list: 'text[]' }, 'setof text',
      prepared<{ word: string; n: number; list: string[] }>()((_db, $) => sql`return query select concat_ws('|', ${$('word')}, ${$('n')} + 1, array_to_string(${$('list')}, ','), ${sql.join(tricky.map((t) => sql`${t}`), sql`, `)}, '$1 -- kept') -- $2 here is a comment
        `));
    expect(await echo.call(database.db, { word: "o'k", n: 41, list: ['x"y', 'a\\b'] })).toEqual([["o'k", '42', 'x"y,a\\b', ...tricky, '$1 -- kept'].join('|')]);
    // (Defined once; called again it is simply called.)
    expect(await echo.call(database.db, { word: 'again', n: 0, list: [] })).toEqual([['again', '1', '', ...tricky, '$1 -- kept'].join('|')]);
  });

  it.skipIf(TEST_DB !== 'postgres')('each statement sees what was committed before it started; a failure changes nothing', async () => {
    const database = await open();
    const { db } = database;
    await sql`create table routine_probe (id int primary key, n int)`.execute(db);
    await sql`insert into routine_probe values (1, 0)`.execute(db);
    // Locks the row, then reads it: run while another transaction holds the row, the read must see
    // that transaction's write, committed after the function's first statement began.
    const lockThenRead = new PgRoutine<{ id: number; fail: boolean }>('dmgate_test_lock_read', { id: 'bigint', fail: 'boolean' }, 'setof bigint',
      prepared<{ id: number; fail: boolean }>()((_db, $) => sql`perform 1 from routine_probe where id = ${$('id')} for update;
        update routine_probe set n = n + 10 where id = ${$('id')};
        perform 1 / (n - n) from routine_probe where id = ${$('id')} and ${$('fail')};
        return query select n::bigint from routine_probe where id = ${$('id')}`));
    await lockThenRead.call(db, { id: 1, fail: false }); // (defined before the race)
    await sql`update routine_probe set n = 0`.execute(db);
    let pending: Promise<number[]> | undefined;
    await db.transaction().execute(async (tx) => {
      await sql`update routine_probe set n = 5 where id = 1`.execute(tx);
      pending = lockThenRead.call<number>(db, { id: 1, fail: false });
      await new Promise((resolve) => setTimeout(resolve, 150));
    });
    expect((await pending!).map(Number)).toEqual([15]);
    await expect(lockThenRead.call(db, { id: 1, fail: true })).rejects.toThrow(/division by zero/);
    const { rows } = await sql<{ n: number }>`select n from routine_probe where id = 1`.execute(db);
    expect(rows[0].n).toBe(15);
  });

  it.skipIf(TEST_DB !== 'postgres')('processes starting together define it once; another body is another function', async () => {
    const [a, b] = [await open(), await open()];
    const body = (k: number) => prepared<{ x: number }>()((_db, $) => sql`return query select ${$('x')}::bigint * ${k}`);
    const twice = () => new PgRoutine<{ x: number }>('dmgate_test_race', { x: 'bigint' }, 'setof bigint', body(2));
    const results = await Promise.all([twice().call(a.db, { x: 3 }), twice().call(b.db, { x: 4 }), twice().call(a.db, { x: 5 })]);
    expect(results.map((r) => r.map(Number))).toEqual([[6], [8], [10]]);
    const thrice = new PgRoutine<{ x: number }>('dmgate_test_race', { x: 'bigint' }, 'setof bigint', body(3));
    expect((await thrice.call(b.db, { x: 3 })).map(Number)).toEqual([9]);
    expect(thrice.definition(b.db).name).not.toBe(twice().definition(b.db).name);
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_proc where proname like 'dmgate_test_race_%' and pronamespace = current_schema()::regnamespace`.execute(a.db);
    expect(rows[0].n).toBe(2);
  });

  it.skipIf(TEST_DB !== 'postgres')('a function that cannot be defined (here: a syntax error) fails its calls with RoutineUndefined, the same one until it is tried again', async () => {
    const database = await open();
    const broken = new PgRoutine<{ x: number }>('dmgate_test_broken', { x: 'bigint' }, 'setof bigint',
      prepared<{ x: number }>()((_db, $) => sql`return query selec ${$('x')}`));
    const first = await broken.call(database.db, { x: 1 }).catch((err: unknown) => err);
    expect(first).toBeInstanceOf(RoutineUndefined);
    expect(String(first)).toMatch(/dmgate_test_broken_[0-9a-f]{12}: syntax error/);
    expect(await broken.call(database.db, { x: 2 }).catch((err: unknown) => err)).toBe(first);
  });
});
