import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDatabase } from './database.js';
import { WalSync } from './wal-sync.js';

describe('WalSync', () => {
  it('lets callers that arrive during a sync share the next one', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'walsync-')), 'x-wal');
    writeFileSync(path, 'frames');
    const wal = new WalSync(path);
    const first = wal.sync();
    const second = wal.sync();
    const third = wal.sync();
    expect(second).not.toBe(first); // the first may have started before the second's write
    expect(third).toBe(second);
    await Promise.all([first, second, third]);
    const after = wal.sync();
    expect(after).not.toBe(second);
    await after;
    wal.close();
  });

  it('fails (so nothing is acknowledged) when the WAL cannot be synced', async () => {
    const wal = new WalSync(join(tmpdir(), 'walsync-missing', 'x-wal'));
    await expect(wal.sync()).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('runs SQLite with NORMAL sync, durable through WalSync, for transactions and autocommit writes alike', async () => {
    const database = await openDatabase({ dataDir: mkdtempSync(join(tmpdir(), 'walsync-db-')) });
    try {
      expect(database.sqlite!.pragma('synchronous', { simple: true })).toBe(1);
      await database.db.transaction().execute(async (tx) => {
        await tx.insertInto('leases').values({ name: 'k', owner: 'o', expires_at: 1 }).execute();
      });
      await database.db.insertInto('leases').values({ name: 'autocommit', owner: 'o', expires_at: 1 }).execute();
      await database.durable();
      const rows = await database.db.selectFrom('leases').select('name').orderBy('name').execute();
      expect(rows.map((r) => r.name)).toEqual(['autocommit', 'k']);
    } finally {
      await database.close();
    }
  });
});
