import { defineConfig } from 'vitest/config';

/**
 * Unit tests once; end-to-end tests (test/) once per database. In CI a missing PostgreSQL is a
 * failure, never a silent skip.
 */
const pgUrl = process.env.DATABASE_URL_TEST;
if (!pgUrl && process.env.CI === 'true') {
  throw new Error('DATABASE_URL_TEST must point at PostgreSQL in CI (the suite runs on SQLite and on PostgreSQL)');
}
if (!pgUrl) console.warn('[dmgate] DATABASE_URL_TEST is not set: end-to-end tests run on SQLite only');

const e2e = (name: string, db: string) => ({
  extends: true as const,
  test: {
    name,
    include: ['test/**/*.test.ts'],
    exclude: ['test/browser/**'],
    env: { DMGATE_TEST_DB: db },
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});

export default defineConfig({
  test: {
    projects: [
      { extends: true, test: { name: 'unit', include: ['src/**/*.test.ts'], testTimeout: 30_000 } },
      e2e('e2e-sqlite', 'sqlite'),
      ...(pgUrl ? [e2e('e2e-postgres', 'postgres')] : []),
    ],
  },
});
