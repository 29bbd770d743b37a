import { sql } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import { fileDatabase } from '../../test/helpers/db.js';
import { runEach } from './database.js';

describe('runEach (SQLite): one statement run once per row', () => {
  const db = fileDatabase('sqlite');
  beforeAll(() => {
    db().sqlite!.exec('create table t (seq integer primary key autoincrement, name text not null unique, size integer)');
  });
  const insert = 'insert into t (name, size) values (?, ?)';

  it('writes every row and gives each run\'s rowid in order', async () => {
    const ids = await db().db.transaction().execute((tx) => runEach(tx, insert, [['a', 1], ['b', null], ['c', 3]]));
    const rows = (await sql<{ seq: number; name: string; size: number | null }>`select seq, name, size from t order by seq`.execute(db().db)).rows;
    expect(rows.map((r) => [r.name, r.size])).toEqual([['a', 1], ['b', null], ['c', 3]]);
    expect(ids).toEqual(rows.map((r) => r.seq));
  });

  it('leaves nothing of a transaction whose row failed', async () => {
    await expect(db().db.transaction().execute((tx) => runEach(tx, insert, [['d', 4], ['a', 5]]))).rejects.toThrow(/UNIQUE/);
    const names = (await sql<{ name: string }>`select name from t order by seq`.execute(db().db)).rows.map((r) => r.name);
    expect(names).toEqual(['a', 'b', 'c']);
  });

  it('gives nothing for no rows', async () => {
    expect(await runEach(db().db, insert, [])).toEqual([]);
  });
});
