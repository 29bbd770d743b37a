import { sql } from 'kysely';
import type { Database } from './database.js';

/**
 * Named leases: one holder at a time across processes (Postgres) — the processor's leadership, a
 * sender's hold on an account, an account's token refresh. An expired lease can be taken over.
 */
export async function tryAcquireLease(database: Database, name: string, owner: string, ttlMs: number, nowMs = Date.now()): Promise<boolean> {
  const expires = nowMs + ttlMs;
  const result = await sql<{ name: string }>`
    insert into leases (name, owner, expires_at) values (${name}, ${owner}, ${expires})
    on conflict (name) do update set owner = excluded.owner, expires_at = excluded.expires_at
    where leases.owner = ${owner} or leases.expires_at < ${nowMs}
    returning name`.execute(database.db);
  return result.rows.length === 1;
}

export async function releaseLease(database: Database, name: string, owner: string): Promise<void> {
  await database.db.deleteFrom('leases').where('name', '=', name).where('owner', '=', owner).execute();
}
