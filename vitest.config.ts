import { existsSync } from 'node:fs';
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

/** The inbox's browser test drives Debian's Chromium; in CI its absence fails the run. */
const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium && process.env.CI === 'true') {
  throw new Error(`${CHROMIUM} is missing: the browser test must run in CI (apt-get install -y chromium)`);
}
if (!hasChromium) console.warn(`[dmgate] ${CHROMIUM} is missing: the browser test (test/browser) is skipped`);

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
      ...(hasChromium ? [{
        extends: true as const,
        test: {
          name: 'browser',
          include: ['test/browser/**/*.test.ts'],
          env: { DMGATE_TEST_DB: 'sqlite' },
          testTimeout: 60_000,
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      }] : []),
    ],
  },
});
