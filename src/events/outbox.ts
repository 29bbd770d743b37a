import { newId } from '../core/ids.js';
import type { Tx } from '../db/database.js';
import { parseJson } from '../db/database.js';
import type { EventInput, StoredEvent } from './types.js';

/** Serializes an event with the common fields first (seed 000's order), then the type's own. */
export function serializeEvent(id: string, input: EventInput, nowMs: number): string {
  const { from, text, ...rest } = input.data as { from?: unknown; text?: unknown };
  const body: Record<string, unknown> = {
    id,
    event: input.event,
    account_id: input.account_id,
    provider: input.provider,
  };
  if (from !== undefined) body.from = from;
  if (text !== undefined) body.text = text;
  body.timestamp = input.timestamp ?? Math.floor(nowMs / 1000);
  Object.assign(body, rest);
  return JSON.stringify(body);
}

interface EndpointFilter { id: string; events: string[] }

function subscribed(endpoint: EndpointFilter, type: string): boolean {
  return endpoint.events.includes('*') || endpoint.events.includes(type);
}

/**
 * Appends events and, in the same transaction, one delivery per enabled endpoint that subscribes
 * to each (the transactional outbox: an event is never stored without its deliveries). The caller
 * notifies the bus ('deliveries', 'events') after commit.
 */
export async function appendEvents(tx: Tx, inputs: EventInput[], nowMs: number): Promise<StoredEvent[]> {
  if (!inputs.length) return [];
  const endpoints = (await tx.selectFrom('webhook_endpoints').select(['id', 'events']).where('enabled', '=', 1).execute())
    .map((e) => ({ id: e.id, events: parseJson<string[]>(e.events, []) }));
  const stored: StoredEvent[] = [];
  for (const input of inputs) {
    const id = newId('evt', nowMs);
    const payload = serializeEvent(id, input, nowMs);
    const row = await tx.insertInto('events').values({
      id, type: input.event, account_id: input.account_id, conversation_id: input.conversation_id ?? null, payload, created_at: nowMs,
    }).returning('seq').executeTakeFirstOrThrow();
    stored.push({ id, seq: row.seq, event: input.event, payload, conversation_id: input.conversation_id ?? null });
    const targets = endpoints.filter((e) => subscribed(e, input.event));
    if (targets.length) {
      await tx.insertInto('deliveries').values(targets.map((e) => ({
        id: newId('whd', nowMs), event_id: id, event_seq: row.seq, endpoint_id: e.id,
        conversation_id: input.conversation_id ?? null, status: 'pending' as const, attempts: 0,
        next_attempt_at: nowMs, locked_until: null, last_status_code: null, last_error: null, created_at: nowMs, updated_at: nowMs,
      }))).execute();
    }
  }
  return stored;
}
