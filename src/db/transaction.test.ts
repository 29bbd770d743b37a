import { sql } from 'kysely';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { fileDatabase } from '../../test/helpers/db.js';
import { runDirect, transaction, type Executor } from './database.js';
import { prepared } from './prepared.js';

interface Row { name: string; size: number | null }

const insertT = prepared<Row>()((_db, $) => sql`insert into t (name, size) values (${$('name')}, ${$('size')})`);
const namesT = prepared<Record<string, never>>()(() => sql<{ name: string }>`select name from t order by name`);
const names = async (db: Executor) => (await namesT.all(db, {})).map((r) => r.name);

describe('transaction (SQLite): prepared statements straight on better-sqlite3', () => {
  const db = fileDatabase('sqlite');
  beforeAll(() => {
    db().sqlite!.exec('create table t (name text primary key, size integer)');
  });
  beforeEach(() => {
    db().sqlite!.exec('delete from t');
  });

  it('runs them directly inside, through Kysely outside and once the transaction ended', async () => {
    const probe = namesT.bound(db().db, {});
    expect(runDirect(db().db, probe)).toBeUndefined();
    let kept: Executor | undefined;
    await transaction(db().db, async (tx) => {
      kept = tx;
      expect(runDirect(tx, probe)).toEqual({ rows: [] });
      const res = await insertT.execute(tx, { name: 'a', size: 1 });
      expect(res.numAffectedRows).toBe(1n);
      expect(await names(tx)).toEqual(['a']);
    });
    expect(runDirect(kept!, probe)).toBeUndefined();
    expect(await names(db().db)).toEqual(['a']);
  });

  it('mixes direct and Kysely statements in one transaction, each seeing the other\'s writes', async () => {
    await transaction(db().db, async (tx) => {
      await tx.insertInto('t' as never).values({ name: 'k', size: 2 } as never).execute();
      await insertT.execute(tx, { name: 'd', size: null });
      expect(await names(tx)).toEqual(['d', 'k']);
      expect((await sql<{ n: number }>`select count(*) as n from t`.execute(tx)).rows[0].n).toBe(2);
    });
  });

  it('rolls the direct writes back with the transaction', async () => {
    await expect(transaction(db().db, async (tx) => {
      await insertT.execute(tx, { name: 'gone', size: 1 });
      throw new Error('abort');
    })).rejects.toThrow('abort');
    await expect(transaction(db().db, async (tx) => {
      await insertT.execute(tx, { name: 'x', size: 1 });
      await insertT.execute(tx, { name: 'x', size: 2 });
    })).rejects.toThrow(/UNIQUE/);
    expect(await names(db().db)).toEqual([]);
  });

  it('keeps other readers out until the commit, as Kysely\'s own path does', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let inside!: () => void;
    const entered = new Promise<void>((r) => (inside = r));
    const tx = transaction(db().db, async (t) => {
      await insertT.execute(t, { name: 'late', size: 1 });
      inside();
      await gate;
    });
    await entered;
    let seen: string[] | undefined;
    const reader = names(db().db).then((n) => (seen = n));
    await new Promise((r) => setTimeout(r, 20));
    expect(seen).toBeUndefined();
    release();
    await tx;
    await reader;
    expect(seen).toEqual(['late']);
  });
});
