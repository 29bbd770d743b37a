import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDatabase } from './database.js';
import { WalSync } from './wal-sync.js';

describe('WalSync', () => {
  it('lets callers of one event-loop turn share a sync, and starts a later caller its own', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'walsync-')), 'x-wal');
    writeFileSync(path, 'frames');
    const wal = new WalSync(path);
    const first = wal.sync();
    expect(wal.sync()).toBe(first);
    await Promise.resolve(); // the shared sync has started
    const later = wal.sync(); // its write may postdate that start: not covered by it
    expect(later).not.toBe(first);
    await Promise.all([first, later]);
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
      // Statement journals in memory (2 = MEMORY): no temporary file written on the event loop.
      expect(database.sqlite!.pragma('temp_store', { simple: true })).toBe(2);
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

describe('background checkpoints', () => {
  it('move to a worker thread once the process commits a lot, and keep the database file current', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'checkpoint-db-'));
    const warnings: string[] = [];
    const database = await openDatabase({ dataDir: dir, onWarning: (m) => warnings.push(m) });
    try {
      database.sqlite!.pragma('wal_checkpoint(TRUNCATE)');
      const before = statSync(join(dir, 'dmgate.db')).size;
      const pad = 'x'.repeat(1000);
      for (let i = 0; i < 600; i++) await database.db.insertInto('leases').values({ name: `lease_${i}_${pad}`, owner: 'o', expires_at: i }).execute();
      expect(database.sqlite!.pragma('wal_autocheckpoint', { simple: true })).toBe(0);
      // About 600 KB committed, far below the 1,000 pages an automatic checkpoint waits for: only
      // the worker's checkpoints copy it into the database file.
      for (let i = 0; i < 50 && statSync(join(dir, 'dmgate.db')).size - before < 500_000; i++) await new Promise((r) => setTimeout(r, 100));
      expect(statSync(join(dir, 'dmgate.db')).size - before).toBeGreaterThan(500_000);
      expect(warnings).toEqual([]);
    } finally {
      await database.close();
    }
    const again = await openDatabase({ dataDir: dir });
    try {
      expect(Number((await again.db.selectFrom('leases').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n)).toBe(600);
    } finally {
      await again.close();
    }
  });

  it('move to the worker thread too when few large commits grow the WAL (group commit)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'checkpoint-db-'));
    const database = await openDatabase({ dataDir: dir });
    try {
      const pad = 'x'.repeat(1000);
      for (let batch = 0; batch < 20 && database.sqlite!.pragma('wal_autocheckpoint', { simple: true }) !== 0; batch++) {
        await database.db.transaction().execute(async (tx) => {
          for (let i = 0; i < 100; i++) await tx.insertInto('leases').values({ name: `lease_${batch}_${i}_${pad}`, owner: 'o', expires_at: i }).execute();
        });
      }
      // 20 commits of about 100 KB each: far from 500 commits, but the WAL passed 1 MB.
      expect(database.sqlite!.pragma('wal_autocheckpoint', { simple: true })).toBe(0);
    } finally {
      await database.close();
    }
  });
});
