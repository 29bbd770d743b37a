import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Selectable } from 'kysely';
import type { AppContext } from '../context.js';
import { notFound } from '../core/errors.js';
import type { ApiKeysTable } from '../db/schema.js';
import { IdParams, ListQuery, errorResponses, listOf } from '../http/schemas.js';
import { principalOf, requireAdmin } from '../http/principal.js';
import { createApiKey, type ApiKeyVerifier } from './api-keys.js';
import { ApiKeySchema } from './schemas.js';

const tags = ['api-keys'];
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function keyView(k: Selectable<ApiKeysTable>) {
  return { id: k.id, name: k.name, prefix: k.key_prefix, created_at: iso(k.created_at)!, last_used_at: iso(k.last_used_at), revoked_at: iso(k.revoked_at) };
}

/** `/v1/api-keys` (admin): list without secrets, create (the key is shown once), revoke. */
export function apiKeyRoutes(ctx: AppContext, keys: ApiKeyVerifier): FastifyPluginAsync {
  const db = ctx.database.db;
  return async (base) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    app.addHook('preHandler', async (req) => { requireAdmin(req); });

    app.get('/api-keys', {
      schema: { tags, summary: 'List API keys, newest first (never the keys themselves)', querystring: ListQuery, response: { 200: listOf(ApiKeySchema), ...errorResponses(400, 401, 403) } },
    }, async (req) => {
      const limit = req.query.limit ?? 50;
      let q = db.selectFrom('api_keys').selectAll().orderBy('id', 'desc').limit(limit + 1);
      if (req.query.cursor) q = q.where('id', '<', Buffer.from(req.query.cursor, 'base64url').toString('utf8'));
      const rows = await q.execute();
      const page = rows.slice(0, limit);
      return { data: page.map(keyView), next_cursor: rows.length > limit ? Buffer.from(page[page.length - 1].id).toString('base64url') : null };
    });

    app.post('/api-keys', {
      schema: {
        tags, summary: 'Create an API key; the answer is the only time the key is shown',
        body: Type.Object({ name: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false }),
        response: { 201: Type.Composite([ApiKeySchema, Type.Object({ key: Type.String({ description: 'dmg_…; store it now, it is not shown again' }) })]), ...errorResponses(400, 401, 403) },
      },
    }, async (req, reply) => {
      const created = await createApiKey(ctx.database, req.body.name.trim(), ctx.clock());
      req.log.info({ key_id: created.id, by: principalOf(req).id }, 'API key created');
      const row = await db.selectFrom('api_keys').selectAll().where('id', '=', created.id).executeTakeFirstOrThrow();
      return reply.code(201).send({ ...keyView(row), key: created.key });
    });

    app.delete('/api-keys/:id', {
      schema: { tags, summary: 'Revoke an API key (at once, in every process within seconds)', params: IdParams, response: { 200: ApiKeySchema, ...errorResponses(401, 403, 404) } },
    }, async (req) => {
      const row = await db.selectFrom('api_keys').selectAll().where('id', '=', req.params.id).executeTakeFirst();
      if (!row) throw notFound('API key', req.params.id);
      const now = ctx.clock();
      if (row.revoked_at === null) {
        await db.updateTable('api_keys').set({ revoked_at: now }).where('id', '=', row.id).execute();
        keys.forget();
        req.log.info({ key_id: row.id, by: principalOf(req).id }, 'API key revoked');
      }
      return keyView({ ...row, revoked_at: row.revoked_at ?? now });
    });
  };
}
