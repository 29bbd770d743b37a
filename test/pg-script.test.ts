import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { runScript } from '../src/db/pg-script.js';
import { fileDatabase, TEST_DB } from './helpers/db.js';

/** Values written into a script's text as literals come back from Postgres exactly as bound parameters would. */
describe(`several statements in one round trip (${TEST_DB})`, () => {
  const db = fileDatabase();

  it.skipIf(TEST_DB !== 'postgres')('inlines values of every kind, and only outside literals and comments', async () => {
    // (Strings over 256 characters go dollar-quoted: the long one has dollars, quotes and backslashes of its own.)
    const long = `${"'$q$ $$ \\' ".repeat(40)}${'x'.repeat(100)}`;
    const tricky = ["it's", 'back\\slash', '$1 and $2', '"quoted"', "''", '', 'naïve 👍', '--not a comment', 'a;b', long, JSON.stringify([{ text: long }])];
    const client = await db().pool!.connect();
    try {
      const statements = tricky.map((v) => sql<{ v: string; marker: string }>`select ${v}::text as v, '$1 -- kept' as marker -- $1 here is a comment
        `.compile(db().db));
      statements.push(sql`select ${42}::bigint as n, ${-1.5}::float8 as f, ${true}::boolean as b, ${null}::text as z, ${['x"y', 'a\\b', "c'd"]}::text[] as arr`.compile(db().db));
      const results = await runScript(client, statements);
      expect(results.slice(0, tricky.length).map((rows) => rows[0])).toEqual(tricky.map((v) => ({ v, marker: '$1 -- kept' })));
      expect(results[tricky.length][0]).toEqual({ n: 42, f: -1.5, b: true, z: null, arr: ['x"y', 'a\\b', "c'd"] });
    } finally {
      client.release();
    }
  });

  it.skipIf(TEST_DB !== 'postgres')('runs each statement with its own snapshot, and a failure stops the script inside its transaction', async () => {
    const client = await db().pool!.connect();
    try {
      await runScript(client, ['create table script_probe (n int)']);
      const [, , counted] = await runScript(client, ['begin', 'insert into script_probe values (1)', 'select count(*)::int as n from script_probe']);
      expect(counted).toEqual([{ n: 1 }]);
      await expect(runScript(client, ['insert into script_probe values (2)', 'select 1/0', 'insert into script_probe values (3)', 'commit'])).rejects.toThrow(/division by zero/);
      await client.query('rollback');
      expect((await runScript(client, ['select count(*)::int as n from script_probe']))[0]).toEqual([{ n: 0 }]);
    } finally {
      await client.query('drop table if exists script_probe').catch(() => undefined);
      client.release();
    }
  });
});
