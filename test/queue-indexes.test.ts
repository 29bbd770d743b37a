import { sql, type Insertable } from 'kysely';
import { describe, expect, it } from 'vitest';
import { releaseHeldInbound, waitingInbound } from '../src/accounts/store.js';
import type { DeliveriesTable, InboundEventsTable } from '../src/db/schema.js';
import { inboundPending, inboundWaiting } from '../src/ingest/inbound-log.js';
import { dueInboundEvents } from '../src/ingest/processor.js';
import { deliveryActive, deliveryFailed } from '../src/webhooks/delivery-status.js';
import { dueDeliveries, expiredLeases } from '../src/webhooks/worker.js';
import { fileDatabase, TEST_DB } from './helpers/db.js';
import { indexesUsed } from './helpers/plans.js';

/**
 * The inbound log's and the deliveries' status indexes (005_partial_queue_indexes) hold only the
 * rows still waiting. A lookup whose condition the planner cannot prove to imply an index's would
 * read the whole history instead, so each lookup's plan is checked, on Postgres also as the
 * generic plan a prepared statement ends with. Most rows here are finished, as in production.
 */
describe(`lookups through the partial indexes of the inbound log and the deliveries (${TEST_DB})`, () => {
  const db = fileDatabase();
  const now = 1_800_000_000_000;
  const N = 4000;

  async function fill(): Promise<void> {
    const database = db();
    const inbound = Array.from({ length: N }, (_, i): Insertable<InboundEventsTable> => ({
      provider: 'tiktok', dedupe_key: `dk_${i}`, event_type: 'im_receive_msg', business_id: `biz_${i % 40}`, body: '{}',
      status: i % 50 === 7 ? 'held' : i % 50 === 8 ? 'pending' : i % 50 === 9 ? 'failed' : 'processed',
      attempts: 0, next_attempt_at: now, received_at: now, processed_at: i % 50 < 7 ? null : now,
    }));
    const deliveries = Array.from({ length: N }, (_, i): Insertable<DeliveriesTable> => ({
      id: `whd_${String(i).padStart(8, '0')}`, event_id: `evt_${i}`, event_seq: i, endpoint_id: `we_${i % 4}`, conversation_id: `cv_${i % 200}`,
      status: i % 50 === 7 ? 'pending' : i % 50 === 8 ? 'delivering' : i % 50 === 9 ? 'failed' : 'succeeded',
      attempts: 1, next_attempt_at: now, locked_until: i % 50 === 8 ? now - 1 : null, last_status_code: 200, last_error: null,
      created_at: now - N + i, updated_at: now,
    }));
    for (let i = 0; i < N; i += 500) {
      await database.db.insertInto('inbound_events').values(inbound.slice(i, i + 500)).execute();
      await database.db.insertInto('deliveries').values(deliveries.slice(i, i + 500)).execute();
    }
    await database.db.insertInto('webhook_endpoints').values([0, 1, 2, 3].map((k) => ({
      id: `we_${k}`, url: `https://example.com/${k}`, events: '["*"]', description: null, enabled: 1, disabled_reason: null,
      ordered: k < 2 ? 1 : 0, secret_enc: 'x', created_at: now, updated_at: now,
    }))).execute();
    await sql`analyze`.execute(database.db);
  }

  it('finds waiting webhooks and deliveries through their indexes, never by reading the history', async () => {
    const database = db();
    await fill();
    const inbound = (q: Parameters<typeof indexesUsed>[1]) => indexesUsed(database, q, ['inbound_events']);
    const deliveries = (q: Parameters<typeof indexesUsed>[1]) => indexesUsed(database, q, ['deliveries', 'd', 'p']);
    const countInbound = () => database.db.selectFrom('inbound_events').select((eb) => eb.fn.countAll<number>().as('n'));
    const countDeliveries = () => database.db.selectFrom('deliveries').select((eb) => eb.fn.countAll<number>().as('n'));

    const cases: [string, Promise<string[]>, string[]][] = [
      // Postgres may read the few pending rows through either partial index.
      ['the processor\'s next batch', inbound(dueInboundEvents(database.db, now, 100)), ['inbound_events_due', 'inbound_events_waiting']],
      ['the pending gauge', inbound(countInbound().where(inboundPending())), ['inbound_events_due', 'inbound_events_waiting']],
      ['whether a business\'s webhooks wait', inbound(waitingInbound(database.db, 'tiktok', 'biz_7')), ['inbound_events_waiting']],
      ['the release of held webhooks', inbound(releaseHeldInbound(database.db, 'tiktok', 'biz_7', now)), ['inbound_events_waiting']],
      ['the account health\'s held count', inbound(countInbound().where('provider', '=', 'tiktok').where('business_id', '=', 'biz_7')
        .where(inboundWaiting()).where('status', '=', 'held')), ['inbound_events_waiting']],
      ['the worker\'s claim', deliveries(dueDeliveries(database.db, now, 100)), ['deliveries_due', 'deliveries_active_order']],
      ['the lease sweep', deliveries(expiredLeases(database.db, now)), ['deliveries_active_order']],
      ['the in-flight gauge', deliveries(countDeliveries().where(deliveryActive())), ['deliveries_active_order']],
      ['the dead-letter gauge', deliveries(countDeliveries().where(deliveryFailed())), ['deliveries_failed']],
      ['the recovery of dead letters', deliveries(database.db.updateTable('deliveries').set({ status: 'pending' })
        .where('endpoint_id', '=', 'we_1').where(deliveryFailed()).where('created_at', '>=', now - 100)), ['deliveries_failed']],
    ];
    // Every scan goes through a partial index (a full index would be the whole history too).
    for (const [what, used, allowed] of cases) {
      const indexes = await used;
      expect(indexes.length, what).toBeGreaterThan(0);
      for (const index of indexes) expect(allowed, `${what} reads by ${index}`).toContain(index);
    }
  });

  it('and those lookups find the right rows', async () => {
    const database = db();
    const due = await dueInboundEvents(database.db, now, 1000).execute();
    expect(due).toHaveLength(N / 50);
    expect(due.map((r) => r.seq)).toEqual([...due.map((r) => r.seq)].sort((a, b) => a - b));
    expect(await waitingInbound(database.db, 'tiktok', 'biz_7').executeTakeFirst()).toBeDefined(); // held ones
    expect(await waitingInbound(database.db, 'tiktok', 'biz_9').executeTakeFirst()).toBeUndefined(); // failed only
    const released = await releaseHeldInbound(database.db, 'tiktok', 'biz_7', now).executeTakeFirst();
    expect(Number(released.numUpdatedRows)).toBe(N / 200); // held: i ≡ 7 (mod 50); biz_7: i ≡ 7 (mod 40)
    // Pending deliveries are i ≡ 7 (mod 50): those of we_3 (i ≡ 7 mod 100), unordered, are all due;
    // those of we_1 (i ≡ 57 mod 100), ordered, only each conversation's oldest (i = 57 and 157).
    const claim = (await dueDeliveries(database.db, now, 1000).execute()).map((c) => Number(c.id.slice(4)));
    expect(claim.filter((i) => i % 100 === 7)).toHaveLength(N / 100);
    expect(claim.filter((i) => i % 100 !== 7).sort((a, b) => a - b)).toEqual([57, 157]);
    const swept = await expiredLeases(database.db, now).executeTakeFirst();
    expect(Number(swept.numUpdatedRows)).toBe(N / 50);
  });
});
