import { sql, type SqlBool } from 'kysely';
import { parseJson, type Tx } from '../db/database.js';
import { prepared } from '../db/prepared.js';
import { matchTemplateAnswer, type Template } from './content.js';
import { idFloor } from '../core/ids.js';
import { DAY_MS } from './queue.js';

export interface TemplateAnswer {
  /** The template message the customer answered. */
  message_id: string;
  /** 1-based position of the option. */
  index: number;
  id: string;
  title: string;
}

/** How long after a template an answer is still linked to it. */
const ANSWER_WINDOW_MS = 2 * DAY_MS;

const latestTemplate = prepared<{ conversationId: string; floor: string }>()((db, $) => db.selectFrom('messages')
  .select(['id', 'extra', 'provider_timestamp'])
  .where('conversation_id', '=', $('conversationId'))
  .where(sql<SqlBool>`direction = 'outbound' and type = 'template'`)
  .where('id', '>=', $('floor'))
  .where('status', 'in', ['sending', 'sent', 'read'])
  .orderBy('id', 'desc').limit(1));

/**
 * Links a customer's text to the options of the latest template sent in the conversation (as a
 * card or as numbered text): "2", "#2" or the option's title pick that option. Used by ingest to
 * add `extra.template_answer` to message.received. Uses the partial index on outbound templates.
 */
export async function templateAnswer(tx: Tx, conversationId: string, text: string | null, atMs: number): Promise<TemplateAnswer | null> {
  if (!text || text.length > 200) return null;
  const latest = await latestTemplate.first(tx, { conversationId, floor: idFloor('msg', atMs - ANSWER_WINDOW_MS) });
  if (!latest) return null;
  if (latest.provider_timestamp !== null && latest.provider_timestamp > atMs) return null;
  const template = parseJson<{ template?: Template }>(latest.extra, {}).template;
  if (!template?.buttons?.length) return null;
  const hit = matchTemplateAnswer(template, text);
  return hit ? { message_id: latest.id, ...hit } : null;
}
