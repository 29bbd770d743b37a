import { CompiledQuery, sql, type Compilable, type Insertable } from 'kysely';
import { describe, expect, it } from 'vitest';
import type { Database } from '../src/db/database.js';
import type { MessagesTable } from '../src/db/schema.js';
import { messageByProviderId } from '../src/ingest/apply.js';
import { byIdempotencyKey } from '../src/messaging/accept.js';
import { dueAccounts, staleSending } from '../src/messaging/pending-replies.js';
import { fileDatabase, TEST_DB } from './helpers/db.js';
import { indexesUsed as plannedIndexes } from './helpers/plans.js';

/**
 * The partial indexes of messages (004_partial_message_indexes) hold only the rows their lookups
 * want: queued replies, keys that are set. A lookup that the planner cannot prove to imply an
 * index's condition would read every message instead, so each one's plan is checked, on Postgres
 * also as the generic plan a prepared statement ends with.
 */
describe(`lookups through the partial indexes of messages (${TEST_DB})`, () => {
  const db = fileDatabase();
  const now = 1_800_000_000_000;

  const indexesUsed = (database: Database, query: Compilable<unknown> | CompiledQuery<unknown>) => plannedIndexes(database, query, ['messages']);

  async function fill(database: Database): Promise<void> {
    // Enough messages that a full scan costs more than any index (Postgres plans by cost), analyzed.
    const rows = Array.from({ length: 3000 }, (_, i): Insertable<MessagesTable> => ({
      id: `msg_${String(i).padStart(12, '0')}`, conversation_id: `cv_${i % 300}`, account_id: `acct_${i % 30}`,
      direction: i % 2 ? 'outbound' : 'inbound', provider_message_id: i % 10 === 9 ? null : `pm_${i}`, type: 'text', text: 'hi',
      source: i % 2 ? 'api' : 'customer', status: i % 10 === 9 ? 'queued' : i % 2 ? 'read' : 'received',
      idempotency_key: i % 100 === 1 ? `key_${i}` : null, attempts: 0, next_attempt_at: i % 10 === 9 ? now : null,
      counted_in_window: 1, created_at: now, updated_at: now,
    }));
    for (let i = 0; i < rows.length; i += 500) await database.db.insertInto('messages').values(rows.slice(i, i + 500)).execute();
    await sql`analyze`.execute(database.db);
  }

  it('finds due replies, stale sends, Idempotency-Keys and TikTok ids through their indexes', async () => {
    const database = db();
    await fill(database);
    expect(await indexesUsed(database, dueAccounts(database.db, now))).toEqual(expect.arrayContaining(['messages_due']));
    expect(await indexesUsed(database, staleSending(database.db, now))).toEqual(expect.arrayContaining(['messages_outbound_pending']));
    expect(await indexesUsed(database, byIdempotencyKey(database.db, 'key_1'))).toEqual(expect.arrayContaining(['messages_idempotency']));
    expect(await indexesUsed(database, messageByProviderId.bound(database.db, { accountId: 'acct_3', providerMessageId: 'pm_3' }))).toEqual(expect.arrayContaining(['messages_provider_id']));
    for (const q of [dueAccounts(database.db, now), staleSending(database.db, now), byIdempotencyKey(database.db, 'key_1'),
      messageByProviderId.bound(database.db, { accountId: 'acct_3', providerMessageId: 'pm_3' })]) {
      expect(await indexesUsed(database, q)).not.toContain('full scan');
    }
    // And they find the rows.
    expect((await dueAccounts(database.db, now).execute()).map((r) => r.account_id).sort()).toEqual(['acct_19', 'acct_29', 'acct_9']);
    expect((await byIdempotencyKey(database.db, 'key_1').executeTakeFirstOrThrow()).id).toBe('msg_000000000001');
  });

  it('still refuses a second message with a set key, and takes any number without one', async () => {
    const database = db();
    const row = (id: string, pm: string | null, key: string | null): Insertable<MessagesTable> => ({
      id, conversation_id: 'cv_u', account_id: 'acct_u', direction: 'outbound', provider_message_id: pm, type: 'text', text: 'hi',
      source: 'api', status: pm ? 'sent' : 'queued', idempotency_key: key, attempts: 0, counted_in_window: 1, created_at: now, updated_at: now,
    });
    await database.db.insertInto('messages').values([row('msg_u1', null, null), row('msg_u2', null, null), row('msg_u3', 'pm_u', 'k_u')]).execute();
    await expect(database.db.insertInto('messages').values(row('msg_u4', 'pm_u', null)).execute()).rejects.toThrow();
    await expect(database.db.insertInto('messages').values(row('msg_u5', null, 'k_u')).execute()).rejects.toThrow();
    // The ingest's insert names the partial index's condition in its conflict target: a repeat is skipped, not an error.
    const again = await database.db.insertInto('messages').values(row('msg_u6', 'pm_u', null))
      .onConflict((oc) => oc.columns(['account_id', 'provider_message_id']).where('provider_message_id', 'is not', null).doNothing()).executeTakeFirst();
    expect(Number(again.numInsertedOrUpdatedRows ?? 0)).toBe(0);
  });
});
