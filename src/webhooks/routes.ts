import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type, type Static } from '@sinclair/typebox';
import type { AppContext } from '../context.js';
import { ApiError, invalid, notFound } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { json, parseJson } from '../db/database.js';
import type { WebhookEndpointsTable } from '../db/schema.js';
import { serializeEvent } from '../events/outbox.js';
import { EVENT_TYPES } from '../events/types.js';
import { requireAdmin } from '../http/principal.js';
import { errorResponses, IdParams, ListQuery, listOf, Nullable, NullableScalar, NullableString, OPTIONAL_BODY } from '../http/schemas.js';
import { deliveryFailed } from './delivery-status.js';
import { generateSecret } from './signing.js';
import { checkWebhookUrl } from './ssrf.js';

/** Webhook endpoints (subscriptions), their delivery log, retry and recovery. Admin only. */

const EventName = Type.Unsafe<string>({ type: 'string', enum: [...EVENT_TYPES, '*'], description: 'an event type, or "*" for all' });
const EventList = Type.Array(EventName, { minItems: 1, maxItems: 64 });
const Url = Type.String({ minLength: 1, maxLength: 2048, description: 'http(s) URL of the subscriber' });

const Endpoint = Type.Object({
  id: Type.String(),
  url: Type.String(),
  events: Type.Array(Type.String()),
  description: NullableString(),
  enabled: Type.Boolean(),
  ordered: Type.Boolean({ description: 'events of one conversation are delivered strictly in order' }),
  disabled_reason: NullableString(),
  created_at: Type.String({ format: 'date-time' }),
});

const EndpointWithSecret = Type.Composite([
  Endpoint,
  Type.Object({ signing_secret: Type.String({ description: 'whsec_… Standard Webhooks secret; shown only here' }) }),
]);

const CreateBody = Type.Object({
  url: Url,
  events: EventList,
  description: Type.Optional(Nullable(Type.String({ maxLength: 500 }))),
  ordered: Type.Optional(Type.Boolean({ default: false })),
}, { additionalProperties: false });

const PatchBody = Type.Object({
  url: Type.Optional(Url),
  events: Type.Optional(EventList),
  description: Type.Optional(Nullable(Type.String({ maxLength: 500 }))),
  enabled: Type.Optional(Type.Boolean()),
  ordered: Type.Optional(Type.Boolean()),
}, { additionalProperties: false });

const MAX_OVERLAP_S = 7 * 86400;
const DEFAULT_OVERLAP_S = 86400;
const RotateBody = Type.Object({
  previous_valid_for_s: Type.Optional(Type.Integer({
    minimum: 0, maximum: MAX_OVERLAP_S, default: DEFAULT_OVERLAP_S,
    description: 'seconds the replaced secret keeps signing deliveries alongside the new one; 0 stops it at once',
  })),
}, { additionalProperties: false, [OPTIONAL_BODY]: true });

const DeliveryStatus = Type.Union([Type.Literal('pending'), Type.Literal('delivering'), Type.Literal('succeeded'), Type.Literal('failed')]);

const Attempt = Type.Object({
  id: Type.String(),
  delivery_id: Type.String(),
  event_id: Type.String(),
  event_type: Type.String(),
  attempted_at: Type.String({ format: 'date-time' }),
  status_code: NullableScalar('integer'),
  latency_ms: Type.Integer(),
  error: NullableString(),
  response_body: NullableString('the first 1 KB of the answer'),
  delivery_status: DeliveryStatus,
});

const Delivery = Type.Object({
  id: Type.String(),
  event_id: Type.String(),
  endpoint_id: Type.String(),
  status: DeliveryStatus,
  attempts: Type.Integer(),
  next_attempt_at: NullableScalar('string', { format: 'date-time' }),
  last_status_code: NullableScalar('integer'),
  last_error: NullableString(),
  created_at: Type.String({ format: 'date-time' }),
});

const RecoverBody = Type.Object({
  since: Type.Union([Type.String(), Type.Number()], { description: 'ISO 8601 time or epoch seconds' }),
  until: Type.Optional(Type.Union([Type.String(), Type.Number()], { description: 'ISO 8601 time or epoch seconds' })),
}, { additionalProperties: false });

const iso = (ms: number) => new Date(ms).toISOString();

function toEndpoint(row: WebhookEndpointsTable): Static<typeof Endpoint> {
  return {
    id: row.id,
    url: row.url,
    events: parseJson<string[]>(row.events, []),
    description: row.description,
    enabled: row.enabled === 1,
    ordered: row.ordered === 1,
    disabled_reason: row.disabled_reason,
    created_at: iso(row.created_at),
  };
}

function normalizeEvents(events: string[]): string[] {
  const unique = [...new Set(events)];
  return unique.includes('*') ? ['*'] : unique;
}

/** Time as epoch ms from an ISO 8601 string, epoch seconds (number or digits). */
function parseTime(value: string | number, field: string): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw invalid(`${field} must be epoch seconds or an ISO 8601 time`, { field });
    return Math.round(value * 1000);
  }
  if (/^\d+(\.\d+)?$/.test(value.trim())) return Math.round(Number(value) * 1000);
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw invalid(`${field} must be epoch seconds or an ISO 8601 time`, { field });
  return ms;
}

const encodeCursor = (parts: (string | number)[]) => Buffer.from(parts.join('|')).toString('base64url');
function decodeAttemptCursor(cursor: string): { at: number; id: string } {
  const [at, id] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  if (!id || !/^\d+$/.test(at ?? '')) throw invalid('cursor is not valid', { field: 'cursor' });
  return { at: Number(at), id };
}
function decodeIdCursor(cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!id.startsWith('wh_')) throw invalid('cursor is not valid', { field: 'cursor' });
  return id;
}

export function endpointRoutes(ctx: AppContext): FastifyPluginAsync {
  const db = ctx.database.db;

  async function urlOrThrow(url: string): Promise<string> {
    const check = await checkWebhookUrl(url, ctx.config.allowPrivateWebhooks);
    if (!check.ok) throw invalid(check.reason, { field: 'url' });
    return check.url.toString();
  }

  async function load(id: string): Promise<WebhookEndpointsTable> {
    const row = await db.selectFrom('webhook_endpoints').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('webhook endpoint', id);
    return row;
  }

  return async (base) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    app.addHook('preHandler', async (req) => { requireAdmin(req); });
    const tags = ['webhooks'];
    const EndpointRef = Endpoint;

    app.post('/webhook-endpoints', {
      schema: {
        tags, summary: 'Create a webhook endpoint', body: CreateBody,
        response: { 201: EndpointWithSecret, ...errorResponses(400, 401, 403) },
      },
    }, async (req, reply) => {
      const now = ctx.clock();
      const url = await urlOrThrow(req.body.url);
      const secret = generateSecret();
      const row: WebhookEndpointsTable = {
        id: newId('wh', now), url, events: json(normalizeEvents(req.body.events as string[])), description: req.body.description ?? null,
        enabled: 1, disabled_reason: null, ordered: req.body.ordered ? 1 : 0, secret_enc: ctx.box.seal(secret),
        previous_secret_enc: null, previous_secret_until: null, created_at: now, updated_at: now,
      };
      await db.insertInto('webhook_endpoints').values(row).execute();
      ctx.bus.notify('endpoints');
      return reply.code(201).send({ ...toEndpoint(row), signing_secret: secret });
    });

    app.get('/webhook-endpoints', {
      schema: { tags, summary: 'List webhook endpoints', querystring: ListQuery, response: { 200: listOf(EndpointRef), ...errorResponses(400, 401, 403) } },
    }, async (req) => {
      const limit = req.query.limit ?? 50;
      let q = db.selectFrom('webhook_endpoints').selectAll().orderBy('id').limit(limit + 1);
      if (req.query.cursor) q = q.where('id', '>', decodeIdCursor(req.query.cursor));
      const rows = await q.execute();
      const page = rows.slice(0, limit);
      return { data: page.map(toEndpoint), next_cursor: rows.length > limit ? encodeCursor([page[page.length - 1].id]) : null };
    });

    app.get('/webhook-endpoints/:id', {
      schema: { tags, summary: 'Show a webhook endpoint', params: IdParams, response: { 200: EndpointRef, ...errorResponses(401, 403, 404) } },
    }, async (req) => toEndpoint(await load(req.params.id)));

    app.patch('/webhook-endpoints/:id', {
      schema: {
        tags, summary: 'Change a webhook endpoint (re-enabling clears disabled_reason)', params: IdParams, body: PatchBody,
        response: { 200: EndpointRef, ...errorResponses(400, 401, 403, 404) },
      },
    }, async (req) => {
      const row = await load(req.params.id);
      const b = req.body;
      const patch: Partial<WebhookEndpointsTable> = { updated_at: ctx.clock() };
      if (b.url !== undefined) patch.url = await urlOrThrow(b.url);
      if (b.events !== undefined) patch.events = json(normalizeEvents(b.events as string[]));
      if (b.description !== undefined) patch.description = b.description;
      if (b.ordered !== undefined) patch.ordered = b.ordered ? 1 : 0;
      if (b.enabled === true) { patch.enabled = 1; patch.disabled_reason = null; }
      if (b.enabled === false && row.enabled === 1) { patch.enabled = 0; patch.disabled_reason = 'disabled through the API'; }
      await db.updateTable('webhook_endpoints').set(patch).where('id', '=', row.id).execute();
      ctx.bus.notify('endpoints');
      // Deliveries wait while an endpoint is disabled; re-enabling lets them flow.
      if (b.enabled === true && row.enabled === 0) ctx.bus.notify('deliveries');
      return toEndpoint({ ...row, ...patch });
    });

    app.delete('/webhook-endpoints/:id', {
      schema: { tags, summary: 'Delete a webhook endpoint and its deliveries', params: IdParams, response: { 204: Type.Null(), ...errorResponses(401, 403, 404) } },
    }, async (req, reply) => {
      const row = await load(req.params.id);
      await db.transaction().execute(async (tx) => {
        await tx.deleteFrom('webhook_endpoints').where('id', '=', row.id).execute();
        await tx.deleteFrom('deliveries').where('endpoint_id', '=', row.id).execute();
        await tx.deleteFrom('delivery_attempts').where('endpoint_id', '=', row.id).execute();
      });
      ctx.bus.notify('endpoints');
      return reply.code(204).send(null);
    });

    app.post('/webhook-endpoints/:id/rotate-secret', {
      schema: {
        tags, summary: 'Replace the signing secret; the old one keeps signing too for a while (24 h unless told)', params: IdParams, body: RotateBody,
        response: { 200: EndpointWithSecret, ...errorResponses(400, 401, 403, 404) },
      },
    }, async (req) => {
      const row = await load(req.params.id);
      const secret = generateSecret();
      const now = ctx.clock();
      // Until then each delivery carries a signature by either secret: the subscriber can switch
      // without refusing anything meanwhile. A second rotation drops the oldest.
      const overlapS = req.body.previous_valid_for_s ?? DEFAULT_OVERLAP_S;
      await db.updateTable('webhook_endpoints').set({
        secret_enc: ctx.box.seal(secret), previous_secret_enc: overlapS > 0 ? row.secret_enc : null,
        previous_secret_until: overlapS > 0 ? now + overlapS * 1000 : null, updated_at: now,
      }).where('id', '=', row.id).execute();
      ctx.bus.notify('endpoints');
      return { ...toEndpoint(row), signing_secret: secret };
    });

    app.post('/webhook-endpoints/:id/test', {
      schema: {
        tags, summary: 'Send a webhook.test event to this endpoint only', params: IdParams,
        response: { 202: Type.Object({ event_id: Type.String(), delivery_id: Type.String() }), ...errorResponses(401, 403, 404, 409) },
      },
    }, async (req, reply) => {
      const row = await load(req.params.id);
      if (!row.enabled) throw new ApiError('conflict', 'the endpoint is disabled; enable it first', { disabled_reason: row.disabled_reason });
      const now = ctx.clock();
      const eventId = newId('evt', now);
      const deliveryId = newId('whd', now);
      const payload = serializeEvent(eventId, {
        event: 'webhook.test', account_id: null, provider: 'dmgate',
        data: { endpoint_id: row.id, message: 'This is a test event from dmgate.' },
      }, now);
      await db.transaction().execute(async (tx) => {
        const ev = await tx.insertInto('events').values({
          id: eventId, type: 'webhook.test', account_id: null, conversation_id: null, payload, created_at: now,
        }).returning('seq').executeTakeFirstOrThrow();
        await tx.insertInto('deliveries').values({
          id: deliveryId, event_id: eventId, event_seq: ev.seq, endpoint_id: row.id, conversation_id: null, status: 'pending',
          attempts: 0, next_attempt_at: now, locked_until: null, last_status_code: null, last_error: null, created_at: now, updated_at: now,
        }).execute();
      });
      ctx.bus.notify('deliveries');
      ctx.bus.notify('events');
      return reply.code(202).send({ event_id: eventId, delivery_id: deliveryId });
    });

    app.get('/webhook-endpoints/:id/deliveries', {
      schema: {
        tags, summary: 'Delivery attempts to this endpoint, newest first', params: IdParams, querystring: ListQuery,
        response: { 200: listOf(Attempt), ...errorResponses(400, 401, 403, 404) },
      },
    }, async (req) => {
      const row = await load(req.params.id);
      const limit = req.query.limit ?? 50;
      let q = db.selectFrom('delivery_attempts as a')
        .innerJoin('deliveries as d', 'd.id', 'a.delivery_id')
        .leftJoin('events as ev', 'ev.id', 'd.event_id')
        .select(['a.id', 'a.delivery_id', 'd.event_id', 'ev.type as event_type', 'a.attempted_at', 'a.status_code', 'a.latency_ms',
          'a.error', 'a.response_body', 'd.status as delivery_status'])
        .where('a.endpoint_id', '=', row.id)
        .orderBy('a.attempted_at', 'desc').orderBy('a.id', 'desc')
        .limit(limit + 1);
      if (req.query.cursor) {
        const c = decodeAttemptCursor(req.query.cursor);
        q = q.where((eb) => eb.or([eb('a.attempted_at', '<', c.at), eb.and([eb('a.attempted_at', '=', c.at), eb('a.id', '<', c.id)])]));
      }
      const rows = await q.execute();
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        data: page.map((r) => ({ ...r, event_type: r.event_type ?? 'unknown', attempted_at: iso(r.attempted_at) })),
        next_cursor: rows.length > limit ? encodeCursor([last.attempted_at, last.id]) : null,
      };
    });

    app.get('/deliveries/:id', {
      schema: { tags, summary: 'Show one delivery', params: IdParams, response: { 200: Delivery, ...errorResponses(401, 403, 404) } },
    }, async (req) => {
      const d = await db.selectFrom('deliveries').selectAll().where('id', '=', req.params.id).executeTakeFirst();
      if (!d) throw notFound('delivery', req.params.id);
      return {
        id: d.id, event_id: d.event_id, endpoint_id: d.endpoint_id, status: d.status, attempts: d.attempts,
        next_attempt_at: d.status === 'pending' ? iso(d.next_attempt_at) : null,
        last_status_code: d.last_status_code, last_error: d.last_error, created_at: iso(d.created_at),
      };
    });

    app.post('/deliveries/:id/retry', {
      schema: {
        tags, summary: 'Re-queue one delivery now (its attempt history is kept)', params: IdParams,
        response: { 202: Type.Object({ id: Type.String(), status: DeliveryStatus }), ...errorResponses(401, 403, 404, 409) },
      },
    }, async (req, reply) => {
      const now = ctx.clock();
      const d = await db.selectFrom('deliveries').select(['id', 'status', 'endpoint_id']).where('id', '=', req.params.id).executeTakeFirst();
      if (!d) throw notFound('delivery', req.params.id);
      const result = await db.updateTable('deliveries')
        .set({ status: 'pending', attempts: 0, next_attempt_at: now, locked_until: null, updated_at: now })
        .where('id', '=', d.id).where('status', '!=', 'delivering').executeTakeFirst();
      if (Number(result.numUpdatedRows) === 0) throw new ApiError('conflict', 'the delivery is being attempted right now', { id: d.id });
      ctx.bus.notify('deliveries');
      return reply.code(202).send({ id: d.id, status: 'pending' as const });
    });

    app.post('/webhook-endpoints/:id/recover', {
      schema: {
        tags, summary: 'Re-queue every failed delivery of this endpoint created since a time', params: IdParams, body: RecoverBody,
        response: { 202: Type.Object({ recovered: Type.Integer() }), ...errorResponses(400, 401, 403, 404) },
      },
    }, async (req, reply) => {
      const row = await load(req.params.id);
      const since = parseTime(req.body.since, 'since');
      const until = req.body.until === undefined ? undefined : parseTime(req.body.until, 'until');
      if (until !== undefined && until <= since) throw invalid('until must be after since', { field: 'until' });
      const now = ctx.clock();
      let q = db.updateTable('deliveries')
        .set({ status: 'pending', attempts: 0, next_attempt_at: now, locked_until: null, updated_at: now })
        .where('endpoint_id', '=', row.id).where(deliveryFailed()).where('created_at', '>=', since);
      if (until !== undefined) q = q.where('created_at', '<', until);
      const result = await q.executeTakeFirst();
      const recovered = Number(result.numUpdatedRows);
      if (recovered) ctx.bus.notify('deliveries');
      return reply.code(202).send({ recovered });
    });
  };
}
