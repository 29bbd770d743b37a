import { sql } from 'kysely';
import { chunks } from '../core/chunks.js';
import { idFloor, newId } from '../core/ids.js';
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

/** SQLite's path; Postgres matches in SQL (insertEventsPostgres): keep the two in step. */
function subscribed(endpoint: EndpointFilter, type: string): boolean {
  return endpoint.events.includes('*') || endpoint.events.includes(type);
}

const enabledEndpoints = prepared<object>()((db) => db.selectFrom('webhook_endpoints').select(['id', 'events']).where('enabled', '=', 1));

/**
 * Appends events and, in the same transaction, one delivery per enabled endpoint that subscribes
 * to each (the transactional outbox: an event is never stored without its deliveries). The caller
 * notifies the bus ('deliveries', 'events') after commit.
 *
 * On Postgres, under the append lock: sequence numbers are taken at insert but become visible at
 * commit. Serializing the tail of event-appending transactions (from the insert to the commit)
 * makes seq order equal commit order, so a reader paging by seq (GET /v1/events, SSE replay) can
 * never skip an event that commits late. Everything then waits on the holder's round trips and its
 * commit's flush, and whatever the waiting transactions hold (their rows) waits with them; so one
 * statement takes the lock, inserts the events and matches them to the endpoints for their
 * deliveries: one round trip for the whole append. (An endpoint created meanwhile gets deliveries
 * from the next events on, as it would had it been created a moment later.)
 */
export async function appendEvents(tx: Tx, inputs: EventInput[], nowMs: number): Promise<StoredEvent[]> {
  if (!inputs.length) return [];
  const endpoints = isPostgres(tx) ? [] : (await enabledEndpoints.all(tx, {})).map((e) => ({ id: e.id, events: parseJson<string[]>(e.events, []) }));
  const stored: StoredEvent[] = [];
  // Multi-row inserts: on Postgres every statement is a round trip, and a batch holds many events.
  for (const part of chunks(inputs)) {
    const chunk = part.map((input) => {
      const id = newId('evt', nowMs);
      return { input, id, payload: serializeEvent(id, input, nowMs) };
    });
    const rows = chunk.map(({ input, id, payload }): EventRow => [id, input.event, input.account_id, input.conversation_id ?? null, payload]);
    const inserted = isPostgres(tx) ? await insertEventsPostgres(tx, rows, nowMs) : await insertEventsSqlite(tx, rows, endpoints, nowMs);
    const byId = new Map(inserted.map((r) => [r.id, r]));
    for (const { input, id, payload } of chunk) {
      const r = byId.get(id)!;
      stored.push({ id, seq: Number(r.seq), event: input.event, payload, conversation_id: input.conversation_id ?? null, deliveries: Number(r.deliveries) });
    }
  }
  return stored;
}

type EventRow = [id: string, type: string, accountId: string | null, conversationId: string | null, payload: string];
/** pg returns bigint and count(*) as strings: read them with Number(). */
type Inserted = { id: string; seq: number | string; deliveries: number | string };

const INSERT_DELIVERY = `insert into deliveries (id, event_id, event_seq, endpoint_id, conversation_id, status, attempts, next_attempt_at, created_at, updated_at)
  values (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)`;

const INSERT_EVENT = 'insert into events (id, type, account_id, conversation_id, payload, created_at) values (?, ?, ?, ?, ?, ?)';

/** SQLite: one prepared insert per row (database.ts, runEach); the endpoints were read by the caller. */
async function insertEventsSqlite(tx: Tx, rows: EventRow[], endpoints: EndpointFilter[], nowMs: number): Promise<Inserted[]> {
  const seqs = await runEach(tx, INSERT_EVENT, rows.map((r) => [...r, nowMs]));
  const deliveries: unknown[][] = [];
  const counts = rows.map(([eventId, type, , conversationId], i) => {
    const before = deliveries.length;
    for (const e of endpoints) if (subscribed(e, type)) deliveries.push([newId('whd', nowMs), eventId, seqs[i], e.id, conversationId, nowMs, nowMs, nowMs]);
    return deliveries.length - before;
  });
  await runEach(tx, INSERT_DELIVERY, deliveries);
  return rows.map((r, i) => ({ id: r[0], seq: seqs[i], deliveries: counts[i] }));
}

/**
 * Postgres: one statement whatever the number of rows (row-sets.ts). It takes the append lock
 * before the events take their sequence numbers (the lock's row is joined to every event row),
 * and makes the deliveries from the enabled endpoints that subscribe to each event's type. A
 * delivery's id is made here: the time part of ours (core/ids.ts; deliveries are never ordered by
 * id), then the last 16 hex digits of a random UUID (hex is a subset of the ids' alphabet).
 */
async function insertEventsPostgres(tx: Tx, rows: EventRow[], nowMs: number): Promise<Inserted[]> {
  const x = rowsAs(tx, [['id', 'text'], ['type', 'text'], ['account_id', 'text'], ['conversation_id', 'text'], ['payload', 'text']], rows);
  const result = await sql<Inserted>`with l as materialized (select pg_advisory_xact_lock(${EVENT_APPEND_LOCK})),
    ins as (
      insert into events (id, type, account_id, conversation_id, payload, created_at)
      select x.id, x.type, x.account_id, x.conversation_id, x.payload, cast(${nowMs} as bigint) from ${x} cross join l
      returning id, seq, type, conversation_id
    ),
    d as (
      insert into deliveries (id, event_id, event_seq, endpoint_id, conversation_id, status, attempts, next_attempt_at, created_at, updated_at)
      select ${deliveryIdPrefix(nowMs)} || right(replace(cast(gen_random_uuid() as text), '-', ''), 16), ins.id, ins.seq, e.id, ins.conversation_id,
        'pending', 0, cast(${nowMs} as bigint), cast(${nowMs} as bigint), cast(${nowMs} as bigint)
      -- subscribed(), in SQL.
      from ins join webhook_endpoints e on e.enabled = 1
        and (cast(e.events as jsonb) @> jsonb_build_array(ins.type) or cast(e.events as jsonb) @> '["*"]')
      returning event_id
    )
    select ins.id, ins.seq, count(d.event_id) as deliveries from ins left join d on d.event_id = ins.id group by ins.id, ins.seq`.execute(tx);
  return result.rows;
}

/** `whd_` and the time part of an id made at nowMs (core/ids.ts). */
function deliveryIdPrefix(nowMs: number): string {
  return idFloor('whd', nowMs).slice(0, -16);
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
