import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { TEST_DB } from './helpers/db.js';

/**
 * Dead row versions are reclaimed only by a vacuum: a PostgreSQL that never runs one makes every
 * request slower as replies accumulate, so the gateway says so at start, with the fix.
 */
describe(`the start warns when PostgreSQL will not vacuum (${TEST_DB})`, () => {
  let gw: TestGateway;
  beforeAll(async () => { gw = await startTestGateway(); });
  afterAll(async () => { await gw?.close(); });

  const warnings = () => gw.logs.lines.map((l) => JSON.parse(l) as { level: number; msg: string; autovacuum?: boolean })
    .filter((l) => l.level === 40 && /autovacuum|track_counts/.test(l.msg));

  it.skipIf(TEST_DB !== 'postgres')('a warning that names the setting and the fix exactly when the server has autovacuum or track_counts off', async () => {
    // Both are server-wide (postgresql.conf): the test cannot change them, so it checks the warning against what the server says.
    const { rows } = await sql<{ autovacuum: string; track_counts: string }>`
      select current_setting('autovacuum') as autovacuum, current_setting('track_counts') as track_counts`.execute(gw.server.ctx.database.db);
    const off = rows[0].autovacuum !== 'on' || rows[0].track_counts !== 'on';
    const found = warnings();
    expect(found).toHaveLength(off ? 1 : 0);
    if (off) {
      expect(found[0].msg).toMatch(rows[0].autovacuum !== 'on' ? /PostgreSQL's autovacuum/ : /PostgreSQL's track_counts/);
      expect(found[0].msg).toContain('Set autovacuum = on and track_counts = on');
      expect(found[0].autovacuum).toBe(rows[0].autovacuum === 'on');
    }
  });

  it.skipIf(TEST_DB !== 'sqlite')('no such warning on SQLite, which reuses freed pages by itself', () => {
    expect(warnings()).toEqual([]);
  });
});
