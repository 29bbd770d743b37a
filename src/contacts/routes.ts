import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../context.js';
import { notFound } from '../core/errors.js';
import { IdParams, Nullable, errorResponses, listOf } from '../http/schemas.js';
import { cursorFilter, pageOf } from '../http/pagination.js';
import { contactView } from '../messaging/views.js';

const ContactSchema = Type.Object({
  id: Type.String(), provider: Type.String(), external_id: Type.String(), username: Nullable(Type.String()), display_name: Nullable(Type.String()),
  avatar_url: Nullable(Type.String()), is_follower: Type.Boolean(), first_referral: Type.Unknown(), attributes: Type.Record(Type.String(), Type.Unknown()),
  notes: Nullable(Type.String()), created_at: Nullable(Type.String()),
  conversations: Type.Optional(Type.Array(Type.Object({ id: Type.String(), account_id: Type.String(), status: Type.String() }))),
}, { $id: 'Contact' });

/** Contacts, with where they came from (first referral) and their conversations. */
export function contactRoutes(ctx: AppContext): FastifyPluginAsync {
  return async (app) => {
    app.addSchema(ContactSchema);
    app.get('/contacts', {
      schema: {
        tags: ['contacts'],
        querystring: Type.Object({ q: Type.Optional(Type.String()), cursor: Type.Optional(Type.String()), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })) }),
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
