import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { openDatabase } from './database.js';

describe('SQLite transactions beside another writer (a one-shot CLI command next to the server)', () => {
  it('take the write lock at begin, so a transaction that reads, then writes, cannot lose its snapshot', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'write-lock-'));
    const database = await openDatabase({ dataDir });
    const other = new BetterSqlite3(join(dataDir, 'dmgate.db'));
    other.pragma('busy_timeout = 0');
    const cliWrite = other.prepare(`insert into leases (name, owner, expires_at) values ('cli', 'o', 1)`);
    try {
      await database.db.transaction().execute(async (tx) => {
        await tx.selectFrom('leases').selectAll().execute();
        // A deferred transaction would let this commit, and then fail its own write below with
        // SQLITE_BUSY_SNAPSHOT (which no busy timeout retries). The other writer waits instead.
        expect(() => cliWrite.run()).toThrow(/database is locked/);
        await tx.insertInto('leases').values({ name: 'server', owner: 'o', expires_at: 1 }).execute();
      });
      cliWrite.run();
      const names = (await database.db.selectFrom('leases').select('name').orderBy('name').execute()).map((r) => r.name);
      expect(names).toEqual(['cli', 'server']);
    } finally {
      other.close();
      await database.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
