import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../context.js';
import { invalid } from '../core/errors.js';
import { errorResponses, ListQuery, NullableString, Query } from '../http/schemas.js';
import { streamRoutes } from '../realtime/routes.js';
import { eventTypesOf } from './types.js';
import { idFilter } from '../http/filters.js';

const EventsQuery = Query({
  ...ListQuery.properties,
  type: Type.Optional(Type.String({ description: 'an event type, or several separated by commas' })),
  account_id: Type.Optional(Type.String()),
  conversation_id: Type.Optional(Type.String()),
  after: Type.Optional(Type.String({ description: 'an event id: only events after it' })),
});

const Event = Type.Object({
  id: Type.String(),
  event: Type.String(),
  account_id: NullableString(),
  provider: Type.String(),
  timestamp: Type.Integer(),
}, { additionalProperties: true, description: 'the same body webhooks deliver' });

const EventList = Type.Object({ data: Type.Array(Event), next_cursor: NullableString() });

const encodeCursor = (seq: number) => Buffer.from(`s${seq}`).toString('base64url');
function decodeCursor(cursor: string): number {
  const raw = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!/^s\d+$/.test(raw)) throw invalid('cursor is not valid', { field: 'cursor' });
  return Number(raw.slice(1));
}

/** `GET /events` (the event log, oldest first: polling and replay source) and `GET /stream` (SSE). */
export function eventRoutes(ctx: AppContext): FastifyPluginAsync {
  const db = ctx.database.db;
  return async (base) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();

    app.get('/events', {
      schema: {
        tags: ['events'], summary: 'The normalized event log, oldest first', querystring: EventsQuery,
        response: { 200: EventList, ...errorResponses(400, 401) },
      },
    }, async (req, reply) => {
      const { limit = 50, cursor, type, account_id, conversation_id, after } = req.query;
      let from = 0;
      if (cursor) from = decodeCursor(cursor);
      if (after) {
        const row = await db.selectFrom('events').select('seq').where('id', '=', after).executeTakeFirst();
        if (!row) throw invalid(`no event ${after}`, { field: 'after' });
        from = Math.max(from, row.seq);
      }
      let q = db.selectFrom('events').select(['seq', 'payload']).where('seq', '>', from).orderBy('seq').limit(limit + 1);
      const types = eventTypesOf(type, 'type');
      if (types) q = q.where('type', 'in', types);
      const accountId = idFilter(account_id, 'acct', 'account_id');
      const conversationId = idFilter(conversation_id, 'cv', 'conversation_id');
      if (accountId) q = q.where('account_id', '=', accountId);
      if (conversationId) q = q.where('conversation_id', '=', conversationId);
      const rows = await q.execute();
      const page = rows.slice(0, limit);
      const next = rows.length > limit ? JSON.stringify(encodeCursor(page[page.length - 1].seq)) : 'null';
      // The payloads are already the exact JSON bodies: splice them in instead of re-serializing.
      return reply.type('application/json; charset=utf-8').send(`{"data":[${page.map((r) => r.payload).join(',')}],"next_cursor":${next}}` as never);
    });

    await app.register(streamRoutes(ctx));
  };
}
