import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../context.js';
import { ApiError } from '../core/errors.js';
import { IdParams, Nullable, Query, errorResponses, listOf } from '../http/schemas.js';
import { principalOf, requireAdmin } from '../http/principal.js';
import { MAX_PASSWORD, UserInputError, createUser, getUser, updateUser, userView } from './users.js';
import { RoleSchema, UserSchema } from './schemas.js';

const tags = ['users'];
const CreateBody = Type.Object({
  email: Type.String({ minLength: 3, maxLength: 320 }),
  name: Type.Optional(Nullable(Type.String({ maxLength: 200 }))),
  role: RoleSchema,
  password: Type.String({ minLength: 1, maxLength: MAX_PASSWORD, description: 'at least 8 characters' }),
}, { additionalProperties: false });
const PatchBody = Type.Object({
  name: Type.Optional(Nullable(Type.String({ maxLength: 200 }))),
  role: Type.Optional(RoleSchema),
  disabled: Type.Optional(Type.Boolean({ description: 'disabled users cannot sign in; their sessions end' })),
  password: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_PASSWORD, description: 'set a new password (ends their sessions)' })),
}, { additionalProperties: false });
const UsersQuery = Query({
  cursor: Type.Optional(Type.String()),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 200 })),
  include_disabled: Type.Optional(Type.Boolean({ default: true })),
});

/**
 * `/v1/users`: every signed-in user may list users (to assign conversations and see who handles
 * what); only admins create and change them. Users are disabled, never deleted, so assignments and
 * history keep their names.
 */
export function userRoutes(ctx: AppContext): FastifyPluginAsync {
  const db = ctx.database.db;
  return async (base) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();

    app.get('/users', {
      schema: { tags, summary: 'List inbox users, oldest first', querystring: UsersQuery, response: { 200: listOf(UserSchema), ...errorResponses(400, 401) } },
    }, async (req) => {
      principalOf(req);
      const limit = req.query.limit ?? 200;
      let q = db.selectFrom('users').selectAll().orderBy('id').limit(limit + 1);
      if (req.query.cursor) q = q.where('id', '>', Buffer.from(req.query.cursor, 'base64url').toString('utf8'));
      if (req.query.include_disabled === false) q = q.where('disabled_at', 'is', null);
      const rows = await q.execute();
      const page = rows.slice(0, limit);
      return { data: page.map(userView), next_cursor: rows.length > limit ? Buffer.from(page[page.length - 1].id).toString('base64url') : null };
    });

    app.get('/users/:id', {
      schema: { tags, summary: 'Show a user', params: IdParams, response: { 200: UserSchema, ...errorResponses(401, 404) } },
    }, async (req) => {
      principalOf(req);
      return userView(await getUser(ctx.database, req.params.id));
    });

    app.post('/users', {
      schema: { tags, summary: 'Create an inbox user (admin)', body: CreateBody, response: { 201: UserSchema, ...errorResponses(400, 401, 403, 409) } },
    }, async (req, reply) => {
      requireAdmin(req);
      try {
        const u = await createUser(ctx.database, { email: req.body.email, name: req.body.name ?? null, role: req.body.role, password: req.body.password }, ctx.clock());
        req.log.info({ user_id: u.id, role: u.role, by: principalOf(req).id }, 'user created');
        return reply.code(201).send(userView(await getUser(ctx.database, u.id)));
      } catch (err) {
        if (err instanceof UserInputError) throw new ApiError(err.code, err.message, { field: err.field });
        throw err;
      }
    });

    app.patch('/users/:id', {
      schema: {
        tags, summary: 'Change a user: name, role, disabled, password (admin)', params: IdParams, body: PatchBody,
        response: { 200: UserSchema, ...errorResponses(400, 401, 403, 404, 409) },
      },
    }, async (req) => {
      const p = requireAdmin(req);
      const row = await updateUser(ctx.database, req.params.id, req.body, ctx.clock());
      req.log.info({ user_id: row.id, changed: Object.keys(req.body), by: p.id }, 'user changed');
      return userView(row);
    });
  };
}
