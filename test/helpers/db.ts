import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { openDatabase, type Database } from '../../src/db/database.js';
import { scratchSchema } from './scratch.js';

/** Which database this vitest project runs on (set per project in vitest.config.ts). */
export const TEST_DB = (process.env.DMGATE_TEST_DB ?? 'sqlite') as 'sqlite' | 'postgres';

export interface TestStorage {
  dataDir: string;
  databaseUrl: string;
  drop(): Promise<void>;
}

/** A fresh, empty store: a temporary data directory, plus a new schema when on Postgres. */
export async function freshStorage(dialect: typeof TEST_DB = TEST_DB): Promise<TestStorage> {
  const dataDir = mkdtempSync(join(tmpdir(), 'dmgate-test-'));
  if (dialect === 'sqlite') {
    return { dataDir, databaseUrl: '', drop: async () => rmSync(dataDir, { recursive: true, force: true, maxRetries: 5 }) };
  }
  const base = process.env.DATABASE_URL_TEST;
  if (!base) throw new Error('DATABASE_URL_TEST is not set: the postgres project needs it');
  const scratch = await scratchSchema(base, 't');
  return {
    dataDir,
    databaseUrl: scratch.url,
    async drop() {
      await scratch.drop();
      rmSync(dataDir, { recursive: true, force: true, maxRetries: 5 });
    },
  };
}

/**
 * A fresh store, opened for the tests of one file (closed and dropped after them): call the result
 * in a test. On the project's database, or on the one named (unit tests of SQLite's own behaviour).
 */
export function fileDatabase(dialect: typeof TEST_DB = TEST_DB): () => Database {
  let storage: TestStorage | undefined;
  let database: Database | undefined;
  beforeAll(async () => {
    storage = await freshStorage(dialect);
    database = await openDatabase({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl || undefined });
  });
  afterAll(async () => {
    await database?.close();
    await storage?.drop();
  });
  return () => database!;
}
