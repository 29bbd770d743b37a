import type { Kysely } from 'kysely';
import type { Dialect } from '../database.js';

/**
 * A webhook endpoint's previous signing secret, kept for a while after a rotation: until
 * `previous_secret_until` every delivery carries a signature by each secret (Standard Webhooks
 * allows several, space-separated), so a subscriber can switch to the new secret without a
 * moment of refused deliveries. Two nullable columns: no rewrite of the table.
 */
export async function up(db: Kysely<unknown>, dialect: Dialect): Promise<void> {
  await db.schema.alterTable('webhook_endpoints').addColumn('previous_secret_enc', 'text').execute();
  await db.schema.alterTable('webhook_endpoints').addColumn('previous_secret_until', dialect === 'postgres' ? 'bigint' : 'integer').execute();
}
