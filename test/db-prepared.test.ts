import { describe, expect, it } from 'vitest';
import { boundRow, prepared } from '../src/db/prepared.js';
import { fileDatabase, TEST_DB } from './helpers/db.js';

describe(`prepared queries (${TEST_DB})`, () => {
  const db = fileDatabase();

  it('builds once, binds each run its own values by name, and keeps the builder constants', async () => {
    let builds = 0;
    type Lease = { name: string; owner: string; expires_at: number };
    const insert = prepared<Lease>()((db, $) => {
      builds++;
      return db.insertInto('leases').values(boundRow($, ['name', 'owner', 'expires_at'] as const));
    });
    const between = prepared<{ owner: string; after: number; before: number }>()((db, $) => {
      builds++;
      // A constant between the bound values: slots are told apart by name, not by position.
      return db.selectFrom('leases').select('name').where('expires_at', '>', $('after')).where('name', '<>', 'never')
        .where('owner', '=', $('owner')).where('expires_at', '<', $('before')).orderBy('name');
    });
    await db().db.transaction().execute(async (tx) => {
      await insert.execute(tx, { name: 'a', owner: 'x', expires_at: 10 });
      await insert.execute(tx, { name: 'b', owner: 'x', expires_at: 20 });
    });
    await insert.execute(db().db, { name: 'c', owner: 'y', expires_at: 30 });
    await insert.execute(db().db, { name: 'never', owner: 'x', expires_at: 40 });

    expect((await between.all(db().db, { owner: 'x', after: 5, before: 50 })).map((r) => r.name)).toEqual(['a', 'b']);
    expect((await between.all(db().db, { owner: 'x', after: 15, before: 50 })).map((r) => r.name)).toEqual(['b']);
    expect((await between.all(db().db, { owner: 'y', after: 0, before: 25 })).map((r) => r.name)).toEqual([]);
    expect(builds).toBe(2);
    const rows = await db().db.selectFrom('leases').select(['name', 'owner']).orderBy('name').execute();
    expect(rows).toEqual([{ name: 'a', owner: 'x' }, { name: 'b', owner: 'x' }, { name: 'c', owner: 'y' }, { name: 'never', owner: 'x' }]);
  });

  it('gives the rows of the values bound, run after run', async () => {
    const byOwner = prepared<{ owner: string; after: number }>()((db, $) => db.selectFrom('leases').select('name')
      .where('owner', '=', $('owner')).where('expires_at', '>', $('after')).where('name', '<>', 'never').orderBy('name'));
    expect((await byOwner.all(db().db, { owner: 'x', after: 0 })).map((r) => r.name)).toEqual(['a', 'b']);
    expect((await byOwner.all(db().db, { owner: 'x', after: 15 })).map((r) => r.name)).toEqual(['b']);
    expect(await byOwner.first(db().db, { owner: 'y', after: 0 })).toEqual({ name: 'c' });
    expect(await byOwner.first(db().db, { owner: 'z', after: 0 })).toBeUndefined();
    const update = prepared<{ name: string; at: number }>()((db, $) => db.updateTable('leases').set({ expires_at: $('at') }).where('name', '=', $('name')));
    const res = await update.execute(db().db, { name: 'a', at: 99 });
    expect(Number(res.numAffectedRows)).toBe(1);
    expect((await byOwner.all(db().db, { owner: 'x', after: 50 })).map((r) => r.name)).toEqual(['a']);
  });

  it('refuses a run that leaves a value out instead of binding nothing', async () => {
    const q = prepared<{ owner: string }>()((db, $) => db.selectFrom('leases').select('name').where('owner', '=', $('owner')));
    await expect(q.all(db().db, {} as { owner: string })).rejects.toThrow('no value for "owner"');
  });
});
