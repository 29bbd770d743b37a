import { literalCondition } from '../db/literal-condition.js';

/* The conditions of the deliveries' partial indexes (migrations 002 and 005), as literals. */

/** Waiting for its (next) attempt: deliveries_due. */
export const deliveryPending = (alias = '') => literalCondition(alias, 'status', `= 'pending'`);
/** Not finished, waiting or in flight: deliveries_active_order. */
export const deliveryActive = (alias = '') => literalCondition(alias, 'status', `in ('pending', 'delivering')`);
/** Dead-lettered: deliveries_failed. */
export const deliveryFailed = (alias = '') => literalCondition(alias, 'status', `= 'failed'`);
