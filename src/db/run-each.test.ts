import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, runEach, type Database } from './database.js';

describe('runEach (SQLite): one statement run once per row', () => {
  let dataDir: string;
  let database: Database;
  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'run-each-'));
    database = await openDatabase({ dataDir });
    database.sqlite!.exec('create table t (seq integer primary key autoincrement, name text not null unique, size integer)');
  });
  afterAll(async () => {
    await database.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  const insert = 'insert into t (name, size) values (?, ?)';

  it('writes every row and gives each run\'s rowid in order', async () => {
    const ids = await database.db.transaction().execute((tx) => runEach(tx, insert, [['a', 1], ['b', null], ['c', 3]]));
    const rows = (await sql<{ seq: number; name: string; size: number | null }>`select seq, name, size from t order by seq`.execute(database.db)).rows;
    expect(rows.map((r) => [r.name, r.size])).toEqual([['a', 1], ['b', null], ['c', 3]]);
    expect(ids).toEqual(rows.map((r) => r.seq));
  });

  it('leaves nothing of a transaction whose row failed', async () => {
    await expect(database.db.transaction().execute((tx) => runEach(tx, insert, [['d', 4], ['a', 5]]))).rejects.toThrow(/UNIQUE/);
    const names = (await sql<{ name: string }>`select name from t order by seq`.execute(database.db)).rows.map((r) => r.name);
    expect(names).toEqual(['a', 'b', 'c']);
  });

  it('gives nothing for no rows', async () => {
    expect(await runEach(database.db, insert, [])).toEqual([]);
  });
});
