import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../context.js';
import { invalid, notFound } from '../core/errors.js';
import { parseJson } from '../db/database.js';
import { IdParams, Nullable, NullableString, Query, errorResponses, listOf } from '../http/schemas.js';
import { cursorFilter, pageOf } from '../http/pagination.js';
import { contactView } from '../messaging/views.js';

const ContactSchema = Type.Object({
  id: Type.String(), provider: Type.String(), external_id: Type.String(), username: NullableString(), display_name: NullableString(),
  avatar_url: NullableString(), is_follower: Type.Boolean(), first_referral: Type.Unknown(), attributes: Type.Record(Type.String(), Type.Unknown()),
  notes: NullableString(), created_at: NullableString(),
  conversations: Type.Optional(Type.Array(Type.Object({ id: Type.String(), account_id: Type.String(), status: Type.String() }))),
}, { $id: 'Contact' });

/**
 * A type list, not an anyOf: with the API's query-string coercion, Ajv coerces into the first anyOf
 * branch that accepts a value (true -> "true"), but leaves a value alone when its type is listed.
 */
const AttributeValue = Type.Unsafe<string | number | boolean | null>({ type: ['string', 'number', 'boolean', 'null'], maxLength: 1000 });

const MAX_ATTRIBUTES = 100;
const MAX_ATTRIBUTE_NAME = 100;

/** Contacts, with where they came from (first referral) and their conversations. */
export function contactRoutes(ctx: AppContext): FastifyPluginAsync {
  return async (app) => {
    app.addSchema(ContactSchema);
    app.get('/contacts', {
      schema: {
        tags: ['contacts'],
        querystring: Query({ q: Type.Optional(Type.String()), cursor: Type.Optional(Type.String()), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })) }),
        response: { 200: listOf(Type.Ref(ContactSchema)), ...errorResponses(400, 401) },
      },
    }, async (req) => {
      const q = req.query as { q?: string; cursor?: string; limit?: number };
      let qb = ctx.database.db.selectFrom('contacts').selectAll();
      if (q.q) {
        const like = `%${q.q.toLowerCase().replace(/[%_]/g, '')}%`;
        qb = qb.where((eb) => eb.or([eb(eb.fn('lower', ['username']), 'like', like), eb(eb.fn('lower', ['display_name']), 'like', like)]));
      }
      const rows = await cursorFilter(qb, 'id', q.cursor, 'desc').orderBy('id', 'desc').limit((q.limit ?? 50) + 1).execute();
      return pageOf(rows, q.limit ?? 50, (r) => r.id, contactView);
    });
    app.patch('/contacts/:id', {
      schema: {
        tags: ['contacts'], summary: "Edit a contact's notes and custom attributes (attributes merge; null removes a key)",
        params: IdParams,
        body: Type.Object({
          notes: Type.Optional(Nullable(Type.String({ maxLength: 10000 }))),
          attributes: Type.Optional(Type.Record(Type.String(), AttributeValue, { description: `at most ${MAX_ATTRIBUTES}, named by 1 to ${MAX_ATTRIBUTE_NAME} characters` })),
        }, { additionalProperties: false }),
        response: { 200: Type.Ref(ContactSchema), ...errorResponses(400, 401, 404) },
      },
    }, async (req) => {
      const { id } = req.params as { id: string };
      const body = req.body as { notes?: string | null; attributes?: Record<string, string | number | boolean | null> };
      const c = await ctx.database.db.selectFrom('contacts').selectAll().where('id', '=', id).executeTakeFirst();
      if (!c) throw notFound('contact', id);
      // (A schema cannot bound a record's key length: Ajv drops the key schema of a record.)
      const badName = Object.keys(body.attributes ?? {}).find((k) => k.trim() === '' || k.length > MAX_ATTRIBUTE_NAME);
      if (badName !== undefined) throw invalid(`attribute names have 1 to ${MAX_ATTRIBUTE_NAME} characters (got ${badName.length})`, { field: 'attributes', length: badName.length, limit: MAX_ATTRIBUTE_NAME });
      const attributes = { ...parseJson<Record<string, unknown>>(c.attributes, {}) };
      for (const [k, v] of Object.entries(body.attributes ?? {})) {
        if (v === null) delete attributes[k]; else attributes[k] = v;
      }
      if (Object.keys(attributes).length > MAX_ATTRIBUTES) throw invalid(`a contact holds at most ${MAX_ATTRIBUTES} attributes`, { field: 'attributes', limit: MAX_ATTRIBUTES });
      const patch = { attributes: JSON.stringify(attributes), ...(body.notes !== undefined ? { notes: body.notes } : {}), updated_at: ctx.clock() };
      await ctx.database.db.updateTable('contacts').set(patch).where('id', '=', id).execute();
      const conversations = await ctx.database.db.selectFrom('conversations').select(['id', 'account_id', 'status']).where('contact_id', '=', id).orderBy('id', 'desc').execute();
      return { ...contactView({ ...c, ...patch }), conversations };
    });

    app.get('/contacts/:id', {
      schema: { tags: ['contacts'], params: IdParams, response: { 200: Type.Ref(ContactSchema), ...errorResponses(401, 404) } },
    }, async (req) => {
      const { id } = req.params as { id: string };
      const c = await ctx.database.db.selectFrom('contacts').selectAll().where('id', '=', id).executeTakeFirst();
      if (!c) throw notFound('contact', id);
      const conversations = await ctx.database.db.selectFrom('conversations').select(['id', 'account_id', 'status']).where('contact_id', '=', id).orderBy('id', 'desc').execute();
      return { ...contactView(c), conversations };
    });
  };
}
