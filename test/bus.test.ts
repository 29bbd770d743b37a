import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { Bus } from '../src/core/bus.js';
import { createLogger } from '../src/core/logger.js';
import { TEST_DB } from './helpers/db.js';

describe(`bus (${TEST_DB})`, () => {
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => { for (const close of closers.splice(0)) await close(); });

  it.skipIf(TEST_DB !== 'postgres')('carries every announcement of a burst to another process, coalesced into few NOTIFYs', async () => {
    const log = createLogger('silent');
    const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL_TEST, max: 4 });
    let notifies = 0;
    const query = pool.query.bind(pool) as (...args: unknown[]) => Promise<unknown>;
    (pool as unknown as { query: typeof query }).query = (...args) => {
      if (typeof args[0] === 'string' && args[0].includes('pg_notify')) notifies++;
      return query(...args);
    };
    const sender = new Bus(log, pool);
    const listener = new Bus(log, pool);
    closers.push(async () => { await sender.close(); await listener.close(); await pool.end(); });
    await listener.start();

    // The channel is the database's: other suites' processes may announce on it too.
    const tag = Math.random().toString(36).slice(2);
    const heard = new Set<string>();
    listener.on('outbound', (data) => { if (data?.startsWith(tag)) heard.add(data); });
    const expected = Array.from({ length: 50 }, (_, i) => `${tag}:${i}`);
    for (const data of expected) {
      sender.notify('outbound', data);
      await new Promise((resolve) => setTimeout(resolve, 1)); // a millisecond apart, as requests under load arrive
    }
    await expect.poll(() => heard.size, { timeout: 5000 }).toBe(expected.length);
    expect(notifies).toBeGreaterThan(0);
    expect(notifies).toBeLessThan(expected.length / 2);
  });
});
