import type { Kysely } from 'kysely';

/**
 * Whether a conversation's customer DMs come with their content: 1 once one arrived by TikTok's
 * `im_receive_msg` (a customer outside the EEA, Switzerland and the UK), null until then. TikTok
 * strips the content from the webhooks of customers inside them (`im_receive_msg_eu`, with no
 * conversation either), so dmgate reads the conversations updated lately; those whose content
 * comes by webhook need no reading. A nullable column: no rewrite of the table.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('conversations').addColumn('content_by_webhook', 'integer').execute();
}
