import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/** Which database this vitest project runs on (set per project in vitest.config.ts). */
export const TEST_DB = (process.env.DMGATE_TEST_DB ?? 'sqlite') as 'sqlite' | 'postgres';

export interface TestStorage {
  dataDir: string;
  databaseUrl: string;
  drop(): Promise<void>;
}

/** A fresh, empty store: a temporary data directory, plus a new schema when on Postgres. */
export async function freshStorage(): Promise<TestStorage> {
  const dataDir = mkdtempSync(join(tmpdir(), 'dmgate-test-'));
  if (TEST_DB === 'sqlite') {
    return { dataDir, databaseUrl: '', drop: async () => rmSync(dataDir, { recursive: true, force: true, maxRetries: 5 }) };
  }
  const base = process.env.DATABASE_URL_TEST;
  if (!base) throw new Error('DATABASE_URL_TEST is not set: the postgres project needs it');
  const schema = `t_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.end();
  const url = new URL(base);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return {
    dataDir,
    databaseUrl: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await c.end();
      rmSync(dataDir, { recursive: true, force: true, maxRetries: 5 });
    },
  };
}
