import { describe, expect, it } from 'vitest';
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
});
