import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { freshStorage, TEST_DB, type TestStorage } from './helpers/db.js';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { customerWrites, reply, waitFor, waitStatus } from './helpers/outbound.js';

/**
 * PostgreSQL restarts, fails over, or ends connections (an idle timeout, a proxy, an operator):
 * every connection the gateway holds dies at once, idle in the pool, lent out inside a
 * transaction, or the one that LISTENs. The process must keep running, reconnect, and listen again.
 * Ending the gateway's own backends (found by their application_name) does to it what a restart
 * does, without touching the other suites' connections to the same server.
 */
describe(`losing every PostgreSQL connection (${TEST_DB})`, () => {
  let gw: TestGateway | undefined;
  let storage: TestStorage | undefined;
  afterEach(async () => {
    await gw?.close();
    await storage?.drop();
    gw = storage = undefined;
  });

  it.skipIf(TEST_DB !== 'postgres')('keeps the gateway running: it reconnects, listens again, and takes and sends replies', async () => {
    storage = await freshStorage();
    const app = `dmgate_loss_${Math.random().toString(36).slice(2, 10)}`;
    const url = new URL(storage.databaseUrl);
    url.searchParams.set('application_name', app);
    gw = await startTestGateway({ storage: { ...storage, databaseUrl: url.toString() } });
    await gw.connect('loss_shop');
    const conv = await customerWrites(gw, 'loss_shop', 'lena', 'Do you ship to Lyon?');

    const admin = new pg.Client({ connectionString: process.env.DATABASE_URL_TEST });
    await admin.connect();
    try {
      const backends = async (where = 'true') => Number((await admin.query(
        `select count(*) as n from pg_stat_activity where application_name = $1 and ${where}`, [app])).rows[0].n);
      expect(await backends("query = 'LISTEN dmgate_bus'")).toBe(1);

      // Replies in flight while every connection ends: some of their transactions lose theirs midway.
      const inFlight = Array.from({ length: 5 }, (_, i) => reply(gw!, { conversation_id: conv.id, type: 'text', text: `Before ${i}` }));
      const ended = await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1', [app]);
      expect(ended.rowCount).toBeGreaterThan(1);
      const answers = await Promise.all(inFlight);
      // Each was either accepted, or refused as unavailable (try again), never left hanging.
      for (const answer of answers) {
        if (answer.status === 202) continue;
        expect(answer.status).toBe(503);
        expect(answer.body.error.code).toBe('unavailable');
        expect(answer.headers.get('retry-after')).toBe('1');
      }

      await waitFor('the bus to listen again', async () => (await backends("query = 'LISTEN dmgate_bus'")) === 1);
      expect(gw.logs.text).toContain('PostgreSQL connection lost');
      expect(gw.logs.text).toContain('bus: listening again');

      // Still a gateway: a new customer message is processed and a reply reaches TikTok.
      expect((await gw.api('GET', '/healthz')).status).toBe(200);
      await customerWrites(gw, 'loss_shop', 'lena', 'Hello again?');
      const res = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'Yes, Lyon is fine.' });
      expect(res.status).toBe(202);
      const sent = await waitStatus(gw, res.body.id, ['sent', 'read']);
      expect(sent.provider_message_id).toBeTruthy();
      for (const answer of answers.filter((a) => a.status === 202)) await waitStatus(gw, answer.body.id, ['sent', 'read']);
    } finally {
      await admin.end();
    }
  });
});
