import { sql } from 'kysely';
import { newId } from '../core/ids.js';
import { isPostgres, parseJson, runEach, type Tx } from '../db/database.js';
import { prepared } from '../db/prepared.js';
import { rowsAs } from '../db/row-sets.js';
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

const enabledEndpoints = prepared<object>()((db) => db.selectFrom('webhook_endpoints').select(['id', 'events']).where('enabled', '=', 1));

/**
 * The endpoints that get deliveries. On Postgres, also the append lock: sequence numbers are taken
 * at insert but become visible at commit. Serializing the tail of event-appending transactions
 * (from here to commit: keep it short) makes seq order equal commit order, so a reader paging by
 * seq (GET /v1/events, SSE replay) can never skip an event that commits late. Taken by the
 * statement that reads the endpoints: every statement is a round trip. (The lock's side of the
 * join always yields its row, so it is taken even when there is no endpoint.)
 */
async function endpointsToDeliver(tx: Tx): Promise<{ id: string; events: string }[]> {
  if (!isPostgres(tx)) return enabledEndpoints.all(tx, {});
  const { rows } = await sql<{ id: string | null; events: string | null }>`select e.id, e.events
    from (select pg_advisory_xact_lock(${EVENT_APPEND_LOCK})) as l left join webhook_endpoints e on e.enabled = 1`.execute(tx);
  return rows.filter((r): r is { id: string; events: string } => r.id !== null);
}

/**
 * Appends events and, in the same transaction, one delivery per enabled endpoint that subscribes
 * to each (the transactional outbox: an event is never stored without its deliveries). The caller
 * notifies the bus ('deliveries', 'events') after commit.
 */
export async function appendEvents(tx: Tx, inputs: EventInput[], nowMs: number): Promise<StoredEvent[]> {
  if (!inputs.length) return [];
  const endpoints = (await endpointsToDeliver(tx)).map((e) => ({ id: e.id, events: parseJson<string[]>(e.events, []) }));
  const stored: StoredEvent[] = [];
  // Multi-row inserts: on Postgres every statement is a round trip, and a batch holds many events.
  for (let i = 0; i < inputs.length; i += CHUNK) {
    const chunk = inputs.slice(i, i + CHUNK).map((input) => {
      const id = newId('evt', nowMs);
      return { input, id, payload: serializeEvent(id, input, nowMs) };
    });
    const rows = await insertEvents(tx, chunk.map(({ input, id, payload }) => [id, input.event, input.account_id, input.conversation_id ?? null, payload]), nowMs);
    const seqOf = new Map(rows.map((r) => [r.id, r.seq]));
    const deliveries = [];
    for (const { input, id, payload } of chunk) {
      const seq = seqOf.get(id)!;
      const event: StoredEvent = { id, seq, event: input.event, payload, conversation_id: input.conversation_id ?? null, deliveries: 0 };
      stored.push(event);
      for (const e of endpoints) {
        if (!subscribed(e, input.event)) continue;
        event.deliveries++;
        deliveries.push({
          id: newId('whd', nowMs), event_id: id, event_seq: seq, endpoint_id: e.id,
          conversation_id: input.conversation_id ?? null, status: 'pending' as const, attempts: 0,
          next_attempt_at: nowMs, locked_until: null, last_status_code: null, last_error: null, created_at: nowMs, updated_at: nowMs,
        });
      }
    }
    if (!isPostgres(tx)) {
      await runEach(tx, INSERT_DELIVERY, deliveries.map((d) => [d.id, d.event_id, d.event_seq, d.endpoint_id, d.conversation_id, d.status, d.attempts, d.next_attempt_at, d.created_at, d.updated_at]));
      continue;
    }
    for (let j = 0; j < deliveries.length; j += CHUNK) await tx.insertInto('deliveries').values(deliveries.slice(j, j + CHUNK)).execute();
  }
  return stored;
}

const INSERT_DELIVERY = `insert into deliveries (id, event_id, event_seq, endpoint_id, conversation_id, status, attempts, next_attempt_at, created_at, updated_at)
  values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

const INSERT_EVENT = 'insert into events (id, type, account_id, conversation_id, payload, created_at) values (?, ?, ?, ?, ?, ?)';

/** SQLite: one prepared insert per event (database.ts, runEach); Postgres: one statement whatever the number of events (row-sets.ts). */
async function insertEvents(tx: Tx, rows: [id: string, type: string, accountId: string | null, conversationId: string | null, payload: string][], nowMs: number) {
  if (!isPostgres(tx)) {
    const seqs = await runEach(tx, INSERT_EVENT, rows.map((r) => [...r, nowMs]));
    return rows.map((r, i) => ({ id: r[0], seq: seqs[i] }));
  }
  const x = rowsAs(tx, [['id', 'text'], ['type', 'text'], ['account_id', 'text'], ['conversation_id', 'text'], ['payload', 'text']], rows);
  const result = await sql<{ id: string; seq: number }>`insert into events (id, type, account_id, conversation_id, payload, created_at)
    select x.id, x.type, x.account_id, x.conversation_id, x.payload, cast(${nowMs} as bigint) from ${x} returning id, seq`.execute(tx);
  return result.rows;
}

/** After commit: wakes the event readers (SSE, inbox) and, when there is something to deliver, the delivery worker. */
export function announceEvents(bus: { notify(channel: 'events' | 'deliveries'): void }, stored: { events: number; deliveries: number }): void {
  if (stored.deliveries) bus.notify('deliveries');
  if (stored.events) bus.notify('events');
}

/** Counts for announceEvents. */
export function tally(stored: StoredEvent[]): { events: number; deliveries: number } {
  let deliveries = 0;
  for (const e of stored) deliveries += e.deliveries;
  return { events: stored.length, deliveries };
}

/** Arbitrary constant naming the advisory lock that orders event appends. */
const EVENT_APPEND_LOCK = 0x646d6701;

/** Rows per multi-row insert: well under SQLite's and Postgres' bound-parameter limits. */
const CHUNK = 500;
