import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import { fileDatabase } from '../../test/helpers/db.js';

/** Rows read through Kysely (arrays turned into objects) are exactly what better-sqlite3's object mode gives. */
describe('SQLite rows read as arrays and built into objects', () => {
  const db = fileDatabase('sqlite');
  beforeAll(() => {
    db().sqlite!.exec(`create table t (id integer primary key, name text, size real, data blob, "weird ""name""" text);
      insert into t (name, size, data, "weird ""name""") values ('a', 1.5, x'0102', 'w'), (null, null, null, null)`);
  });

  const both = async (text: string) => {
    const built = (await sql.raw(text).execute(db().db)).rows;
    const native = db().sqlite!.prepare(text).all();
    return { built, native };
  };

  it('gives the same keys in the same order, values of every type and nulls', async () => {
    const { built, native } = await both('select * from t order by id');
    expect(built).toEqual(native);
    expect(built.map((r) => Object.keys(r as object))).toEqual(native.map((r) => Object.keys(r as object)));
    expect((built[0] as { data: Buffer }).data).toBeInstanceOf(Buffer);
  });

  it('lets a later column of the same name win, as better-sqlite3 does', async () => {
    const { built, native } = await both('select 1 as a, 2 as b, 3 as a');
    expect(built).toEqual([{ a: 3, b: 2 }]);
    expect(built).toEqual(native);
  });

  it('reads rows that writes return, and reads again after its statement was cached', async () => {
    const text = `update t set size = size + 1 where id = 1 returning id, size`;
    expect((await sql.raw(text).execute(db().db)).rows).toEqual([{ id: 1, size: 2.5 }]);
    expect((await sql.raw(text).execute(db().db)).rows).toEqual([{ id: 1, size: 3.5 }]);
    expect((await sql.raw('select count(*) as n from t').execute(db().db)).rows).toEqual([{ n: 2 }]);
  });

  it('leaves a column named __proto__ to better-sqlite3 (an object literal would set the prototype)', async () => {
    const { built, native } = await both('select 1 as "__proto__", 2 as x');
    expect(built).toEqual(native);
    expect(Object.getPrototypeOf(built[0])).toBe(Object.prototype);
  });
});
