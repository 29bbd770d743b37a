import { sql, type Kysely } from 'kysely';
import type { Dialect } from './database.js';

/**
 * A migration's new index on a table that grows with traffic (messages, deliveries, the inbound
 * log), optionally replacing an older one.
 *
 * A plain CREATE INDEX holds a lock that blocks every insert and update of its table until the
 * build ends: on a table of millions of rows, tens of seconds in which no webhook is stored, no
 * reply accepted, no event appended, in every process of a cluster being upgraded. On PostgreSQL
 * a change to a table larger than ONLINE_MIN_BYTES is therefore only recorded by its migration
 * (in index_builds, in the migration's transaction) and built after the migrations commit, with
 * CREATE INDEX CONCURRENTLY, which lets writes go on (buildDeferredIndexes). Smaller tables, a new
 * database among them, and SQLite (whose single writer the build would hold anyway) build in the
 * migration as before.
 *
 * A deferred index exists only once every pending migration has run: a later migration must not
 * drop or rely on an index an earlier one builds this way.
 */
export interface IndexChange {
  name: string;
  unique?: boolean;
  /** What follows `create index <name>`: `on <table> (<columns>) [where …]`. */
  definition: string;
  /** An index this one replaces, dropped once this one is built (it may have the same name). */
  replaces?: string;
}

/** Below this heap size a table's index builds in a fraction of a second: build it in the migration. */
export const ONLINE_MIN_BYTES = 8 * 1024 * 1024;

/** Applies a migration's index changes in its transaction, or, on PostgreSQL, defers those of large tables. */
export async function changeIndexes(db: Kysely<unknown>, dialect: Dialect, migration: string, changes: IndexChange[]): Promise<void> {
  let position = 0;
  for (const change of changes) {
    position++;
    const table = /^on\s+(\w+)/i.exec(change.definition)?.[1];
    if (!table) throw new Error(`index ${change.name}: the definition must start with "on <table>"`);
    if (dialect === 'postgres' && await tableBytes(db, table) >= ONLINE_MIN_BYTES) {
      await sql`create table if not exists index_builds (
        migration text not null, position integer not null, name text not null, table_name text not null,
        unique_index boolean not null, definition text not null, replaces text,
        requested_at bigint not null, finished_at bigint, primary key (migration, position))`.execute(db);
      await sql`insert into index_builds (migration, position, name, table_name, unique_index, definition, replaces, requested_at)
        values (${migration}, ${position}, ${change.name}, ${table}, ${change.unique ?? false}, ${change.definition},
          ${change.replaces ?? null}, ${Date.now()})`.execute(db);
      continue;
    }
    if (change.replaces) await sql`drop index ${sql.id(change.replaces)}`.execute(db);
    await createIndex(change.name, change.unique ?? false, change.definition).execute(db);
  }
}

/** The one statement both ways build with, so an index built later is the one the migration would have built. */
const createIndex = (name: string, unique: boolean, definition: string, how: 'concurrently' | '' = '') =>
  sql.raw(`create ${unique ? 'unique ' : ''}index ${how} ${name} ${definition}`);

async function tableBytes(db: Kysely<unknown>, table: string): Promise<number> {
  const { rows } = await sql<{ bytes: string | number | null }>`select pg_relation_size(to_regclass(${table})) as bytes`.execute(db);
  return Number(rows[0]?.bytes ?? 0);
}

interface IndexBuild {
  migration: string;
  position: number;
  name: string;
  table_name: string;
  unique_index: boolean;
  definition: string;
  replaces: string | null;
}

/**
 * PostgreSQL: builds the index changes that migrations deferred, each without blocking writes,
 * one process at a time. Runs on one connection outside any transaction, after the migrations have
 * committed: a concurrent build waits for every transaction older than itself, so it must hold
 * none, and the lock that makes other processes wait is a session lock they poll for (a waiting
 * statement would hold a snapshot the build waits for: a deadlock).
 *
 * Resumable: a build interrupted (the process ends, the connection drops) leaves an invalid index
 * under its temporary name, dropped and built again on the next start; the old index goes only once
 * the new one is valid, and the rename to the final name commits with the build's record.
 */
export async function buildDeferredIndexes(db: Kysely<unknown>, notice: (message: string) => void): Promise<void> {
  const { rows: [table] } = await sql<{ exists: boolean }>`select to_regclass('index_builds') is not null as exists`.execute(db);
  if (!table?.exists) return;
  await db.connection().execute(async (conn) => {
    let announced = false;
    while (!(await sql<{ locked: boolean }>`select pg_try_advisory_lock(${BUILD_LOCK}, hashtext(current_schema())) as locked`.execute(conn)).rows[0].locked) {
      if (!announced) notice('waiting for another process to finish building indexes');
      announced = true;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    try {
      const { rows } = await sql<IndexBuild>`select migration, position, name, table_name, unique_index, definition, replaces
        from index_builds where finished_at is null order by migration, position`.execute(conn);
      for (const build of rows) await buildOne(conn, build, notice);
    } finally {
      await sql`select pg_advisory_unlock(${BUILD_LOCK}, hashtext(current_schema()))`.execute(conn);
    }
  });
}

async function buildOne(conn: Kysely<unknown>, b: IndexBuild, notice: (message: string) => void): Promise<void> {
  const building = `${b.name}_building`;
  const { rows: [existing] } = await sql<{ valid: boolean }>`select indisvalid as valid from pg_index
    where indexrelid = to_regclass(${building})`.execute(conn);
  if (!existing?.valid) {
    if (existing) await sql`drop index concurrently ${sql.id(building)}`.execute(conn);
    notice(`building index ${b.name} on ${b.table_name} without blocking writes (migration ${b.migration})`);
    const started = Date.now();
    await createIndex(building, b.unique_index, b.definition, 'concurrently').execute(conn);
    notice(`built index ${b.name} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  if (b.replaces) await sql`drop index concurrently if exists ${sql.id(b.replaces)}`.execute(conn);
  await conn.transaction().execute(async (trx) => {
    await sql`alter index ${sql.id(building)} rename to ${sql.id(b.name)}`.execute(trx);
    await sql`update index_builds set finished_at = ${Date.now()} where migration = ${b.migration} and position = ${b.position}`.execute(trx);
  });
}

/** Arbitrary constant naming the session lock of index builds (with the schema's hash). */
const BUILD_LOCK = 0x646d6702;
