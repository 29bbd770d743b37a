import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../src/db/database.js';
import { ONLINE_MIN_BYTES } from '../src/db/index-changes.js';
import { migrate } from '../src/db/migrate.js';
import { freshStorage, TEST_DB, type TestStorage } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

/**
 * Upgrading a database whose messages, deliveries and inbound log are large: migrations 004 and
 * 005 replace indexes of those tables. Built in the migration, each index would block every write
 * to its table for as long as it takes; built after it, concurrently, writes go on. An open
 * transaction that has written to `deliveries` holds the builds of that table (005's, the last)
 * back, so the test can write while a build is in progress, and end the build's connection midway
 * (a process dying during an upgrade) to see another process pick it up. (Not `messages`: migration
 * 006 adds triggers to it, which waits for its writers inside the migration.)
 */
describe(`index changes on large tables (${TEST_DB})`, () => {
  const storages: TestStorage[] = [];
  const databases: Database[] = [];
  const clients: pg.Client[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.end().catch(() => undefined);
    for (const d of databases.splice(0)) await d.close();
    for (const s of storages.splice(0)) await s.drop();
  });

  async function open(storage: TestStorage): Promise<Database> {
    const database = await openDatabase({ dataDir: storage.dataDir, databaseUrl: storage.databaseUrl, migrate: false });
    databases.push(database);
    return database;
  }
  async function client(url: string): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    clients.push(c);
    return c;
  }
  /** Every index of the three tables, by name, its definition without the schema. */
  async function indexes(c: pg.Client): Promise<Record<string, string>> {
    const { rows } = await c.query<{ name: string; def: string; valid: boolean }>(`select c.relname as name, pg_get_indexdef(i.indexrelid) as def,
        i.indisvalid as valid
      from pg_index i join pg_class c on c.oid = i.indexrelid join pg_class t on t.oid = i.indrelid
      where t.relnamespace = current_schema()::regnamespace and t.relname in ('messages', 'deliveries', 'inbound_events')`);
    expect(rows.filter((r) => !r.valid)).toEqual([]);
    return Object.fromEntries(rows.map((r) => [r.name, r.def.replace(/ ON \w+\./, ' ON ')]));
  }
  /** The definitions a new (small) database gets in its migrations. */
  async function expectedIndexes(): Promise<Record<string, string>> {
    const storage = await freshStorage();
    storages.push(storage);
    await open(storage).then((d) => migrate(d));
    return indexes(await client(storage.databaseUrl));
  }

  it.skipIf(TEST_DB !== 'postgres')('builds them after the migrations without blocking writes, and resumes a build cut short', async () => {
    const storage = await freshStorage();
    storages.push(storage);
    const first = await open(storage);
    await migrate(first, { to: '003_outbound_queue' });
    const admin = await client(storage.databaseUrl);
    // Each table well above the size built inside a migration: about 400 bytes a row.
    const rows = Math.ceil((2 * ONLINE_MIN_BYTES) / 400);
    await admin.query(`insert into messages (id, conversation_id, account_id, direction, provider_message_id, type, text, source, status,
        idempotency_key, next_attempt_at, created_at, updated_at)
      select 'msg_' || g, 'cv_' || (g % 500), 'acc_' || (g % 20), 'outbound', 'tt_' || g, 'text', repeat('x', 300), 'api',
        case when g % 100 = 0 then 'queued' else 'sent' end, case when g % 3 = 0 then 'key_' || g end, g, g, g
      from generate_series(1, ${rows}) g`);
    await admin.query(`insert into inbound_events (provider, dedupe_key, event_type, business_id, body, status, received_at)
      select 'tiktok', 'dk_' || g, 'im_receive_msg', 'biz_' || (g % 20), repeat('x', 300),
        case when g % 100 = 0 then 'pending' else 'processed' end, g
      from generate_series(1, ${rows}) g`);
    await admin.query(`insert into deliveries (id, event_id, event_seq, endpoint_id, conversation_id, status, next_attempt_at,
        last_error, created_at, updated_at)
      select 'whd_' || g, 'evt_' || g, g, 'we_1', 'cv_' || (g % 500), case when g % 100 = 0 then 'failed' else 'succeeded' end, g,
        repeat('x', 300), g, g
      from generate_series(1, ${rows}) g`);

    // A transaction that wrote to deliveries and stays open: the first build of that table waits for it.
    const open1 = await client(storage.databaseUrl);
    await open1.query('begin');
    await open1.query(`insert into deliveries (id, event_id, event_seq, endpoint_id, conversation_id, status, next_attempt_at, created_at, updated_at)
      values ('whd_open', 'evt_open', 0, 'we_1', 'cv_1', 'succeeded', 1, 1, 1)`);

    const building = async () => (await admin.query<{ pid: number }>(`select pid from pg_stat_activity
      where datname = current_database() and state = 'active' and wait_event_type = 'Lock' and query ~* '^(create|drop) .*index.*deliveries'`)).rows;
    const writeMeanwhile = async (id: string) => {
      const writer = await client(storage.databaseUrl);
      await writer.query("set statement_timeout = '10s'"); // blocked behind a plain CREATE INDEX, this fails
      await writer.query(`insert into deliveries (id, event_id, event_seq, endpoint_id, conversation_id, status, next_attempt_at, created_at, updated_at)
        values ($1, $1, 2, 'we_1', 'cv_2', 'pending', 2, 2, 2)`, [id]);
    };

    // Process A runs the migrations and starts building; B starts meanwhile and waits for A.
    const a = migrate(first).then(() => 'done', (err: Error) => err.message);
    await waitFor('the first index build waits for the open transaction', async () => (await building()).length === 1);
    await writeMeanwhile('whd_during_a');
    const notices: string[] = [];
    const second = await open(storage);
    const b = migrate(second, { notice: (m) => notices.push(m) });
    await waitFor('B waits for A', async () => notices.some((n) => n.startsWith('waiting for another process')));

    // A's connection ends mid-build: B takes over, drops the half-built index and builds again.
    const [{ pid }] = await building();
    await admin.query('select pg_terminate_backend($1)', [pid]);
    expect(await a).not.toBe('done');
    await waitFor('B drops the half-built index, waiting in turn for the open transaction', async () => (await building()).length === 1);
    await writeMeanwhile('whd_during_b');
    await open1.query('commit');
    await b;

    // A built those of messages and inbound_events before it stopped; B, the two of deliveries.
    expect(notices.filter((n) => n.startsWith('built index')).length).toBe(2);
    expect(await indexes(admin)).toEqual(await expectedIndexes());
    const { rows: builds } = await admin.query('select name from index_builds where finished_at is null');
    expect(builds).toEqual([]);
    const { rows: [{ n }] } = await admin.query(`select count(*)::int as n from deliveries where id in ('whd_open', 'whd_during_a', 'whd_during_b')`);
    expect(n).toBe(3);
    // The rebuilt unique index holds.
    await expect(admin.query(`insert into messages (id, conversation_id, account_id, direction, type, source, status, idempotency_key,
      created_at, updated_at) values ('msg_dup', 'cv_2', 'acc_1', 'outbound', 'text', 'api', 'queued', 'key_3', 3, 3)`)).rejects.toThrow(/messages_idempotency/);
    // A later start has nothing to build.
    const later: string[] = [];
    await migrate(second, { notice: (m) => later.push(m) });
    expect(later).toEqual([]);
  }, 120_000);
});
