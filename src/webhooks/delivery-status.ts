import { sql, type SqlBool } from 'kysely';

/**
 * Literal SQL for the conditions of the deliveries' partial indexes (migrations 002 and 005):
 * SQLite uses a partial index only when the query states its condition with the same literals.
 */
const status = (alias: string, condition: string) => sql<SqlBool>`${sql.raw(`${alias ? alias + '.' : ''}status ${condition}`)}`;

/** Waiting for its (next) attempt: deliveries_due. */
export const deliveryPending = (alias = '') => status(alias, `= 'pending'`);
/** Not finished, waiting or in flight: deliveries_active_order. */
export const deliveryActive = (alias = '') => status(alias, `in ('pending', 'delivering')`);
/** Dead-lettered: deliveries_failed. */
export const deliveryFailed = (alias = '') => status(alias, `= 'failed'`);
