import { describe, expect, it } from 'vitest';
import { hasPrefix, idTime } from '../src/core/ids.js';
import { appendEvents } from '../src/events/outbox.js';
import type { EventInput } from '../src/events/types.js';
import { fileDatabase, TEST_DB } from './helpers/db.js';

const event = (n: number): EventInput => ({ event: 'message.received', account_id: null, provider: 'tiktok', data: { text: `#${n}` } });

describe(`outbox (${TEST_DB})`, () => {
  const db = fileDatabase();

  it.skipIf(TEST_DB !== 'postgres')('commits event-appending transactions one after another, so seq order is commit order (no endpoint registered)', async () => {
    let releaseFirst!: () => void;
    const held = new Promise<void>((resolve) => { releaseFirst = resolve; });
    let firstAppended!: () => void;
    const appended = new Promise<void>((resolve) => { firstAppended = resolve; });
    const commits: string[] = [];
    const first = db().db.transaction().execute(async (tx) => {
      await appendEvents(tx, [event(1)], Date.now());
      firstAppended();
      await held; // still open: a later appender must wait for this commit
    }).then(() => commits.push('first'));
    await appended;
    const second = db().db.transaction().execute(async (tx) => {
      await appendEvents(tx, [event(2)], Date.now());
    }).then(() => commits.push('second'));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(commits).toEqual([]); // the second is waiting for the first's lock
    releaseFirst();
    await Promise.all([first, second]);
    expect(commits).toEqual(['first', 'second']);
    const rows = await db().db.selectFrom('events').select(['seq', 'payload']).orderBy('seq').execute();
    expect(rows.map((r) => JSON.parse(r.payload).text)).toEqual(['#1', '#2']);
  });

  it('stores each event with one delivery per subscribed endpoint, carrying its seq, in the same transaction', async () => {
    const now = Date.now();
    const endpoint = (id: string, events: string[], enabled = 1) => ({
      id, url: `http://127.0.0.1:9/${id}`, events: JSON.stringify(events), description: null, enabled, disabled_reason: null, ordered: 0,
      secret_enc: 'x', created_at: now, updated_at: now,
    });
    await db().db.insertInto('webhook_endpoints').values([
      endpoint('wh_all', ['*']), endpoint('wh_sent', ['message.sent']), endpoint('wh_off', ['*'], 0),
    ]).execute();
    const inputs: EventInput[] = [event(10), { ...event(11), event: 'message.sent' }, event(12)];
    const stored = await db().db.transaction().execute((tx) => appendEvents(tx, inputs, now));
    expect(stored.map((e) => e.deliveries)).toEqual([1, 2, 1]);
    const deliveries = await db().db.selectFrom('deliveries').innerJoin('events', 'events.id', 'deliveries.event_id')
      .select(['deliveries.id', 'deliveries.endpoint_id', 'deliveries.event_seq', 'events.seq', 'deliveries.status', 'events.type'])
      .where('deliveries.event_id', 'in', stored.map((e) => e.id)).orderBy('events.seq').orderBy('deliveries.endpoint_id').execute();
    expect(deliveries.map((d) => [d.type, d.endpoint_id, d.status])).toEqual([
      ['message.received', 'wh_all', 'pending'], ['message.sent', 'wh_all', 'pending'], ['message.sent', 'wh_sent', 'pending'], ['message.received', 'wh_all', 'pending'],
    ]);
    for (const d of deliveries) expect(Number(d.event_seq)).toBe(Number(d.seq));
    // Ids of the documented shape, made at the append's time, distinct.
    for (const d of deliveries) expect([hasPrefix(d.id, 'whd'), idTime(d.id)]).toEqual([true, now]);
    expect(new Set(deliveries.map((d) => d.id)).size).toBe(deliveries.length);
    expect(stored.map((e) => e.seq)).toEqual([...stored.map((e) => e.seq)].sort((a, b) => a - b));
  });
});
