import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../context.js';
import { IdParams, ListQuery, Query, Nullable, NullableScalar, NullableString, errorResponses, listOf } from '../http/schemas.js';
import { requireAdmin } from '../http/principal.js';
import { accountView, getAccount, setAccountStatus } from './store.js';
import { tiktokClient } from '../providers/tiktok/provider.js';
import { pageOf, cursorFilter } from '../http/pagination.js';
import { requestBackfill } from './backfill.js';
import { accountHealth } from './health.js';

const Status = Type.Union([Type.Literal('active'), Type.Literal('needs_reauth'), Type.Literal('disconnected'), Type.Literal('restricted')]);

export const BackfillSchema = Type.Object({
  status: Type.Union([Type.Literal('queued'), Type.Literal('running'), Type.Literal('done'), Type.Literal('failed')]),
  days: Type.Integer(),
  conversations_done: Type.Integer(),
  conversations_total: NullableScalar('integer'),
  messages: Type.Integer({ description: 'messages stored by this run (a repeated run stores none twice)' }),
  requested_at: Type.String(),
  started_at: NullableString(),
  finished_at: NullableString(),
  error: NullableString(),
  history_before: Type.String({ description: 'older messages are stored as history, without message.received' }),
}, { $id: 'AccountBackfill' });

export const AccountSchema = Type.Object({
  id: Type.String(), provider: Type.String(), external_id: Type.String(),
  username: NullableString(), display_name: NullableString(), avatar_url: NullableString(), region: NullableString(),
  status: Status,
  status_reason: NullableString('why the account cannot send, and the fix'),
  scopes: Type.Array(Type.String()),
  token_expires_at: NullableString(), refresh_token_expires_at: NullableString(),
  backfill: Nullable(Type.Ref(BackfillSchema)),
  created_at: Type.String(),
}, { $id: 'Account' });

const HealthSchema = Type.Object({
  account_id: Type.String(), status: Status, status_reason: NullableString(),
  healthy: Type.Boolean(), fix: NullableString(), checked_at: Type.String(),
  token: Type.Object({
    expires_at: NullableString(), expires_in_s: NullableScalar('integer'),
    refresh_token_expires_at: NullableString(), refresh_token_expires_in_s: NullableScalar('integer'),
  }),
  tiktok: Type.Object({
    ok: NullableScalar('boolean', { description: 'token_info answered with every messaging scope; null when not asked' }),
    scopes: Type.Array(Type.String()), missing_scopes: Type.Array(Type.String()), error: NullableString(), provider_code: NullableScalar('integer'),
  }),
  webhook: Type.Object({ ok: NullableScalar('boolean'), callback_url: NullableString(), expected: Type.String(), error: NullableString() }),
  backfill: Nullable(Type.Ref(BackfillSchema)),
  waiting: Type.Object({ held_replies: Type.Integer(), queued_replies: Type.Integer(), held_webhooks: Type.Integer() }),
}, { $id: 'AccountHealth' });

export function accountRoutes(ctx: AppContext): FastifyPluginAsync {
  return async (app) => {
    app.addSchema(BackfillSchema);
    app.addSchema(AccountSchema);
    app.addSchema(HealthSchema);

    app.get('/accounts', {
      schema: {
        tags: ['accounts'],
        querystring: Query({ ...ListQuery.properties, status: Type.Optional(Status) }),
        response: { 200: listOf(Type.Ref(AccountSchema)), ...errorResponses(400, 401) },
      },
    }, async (req) => {
      const q = req.query as { cursor?: string; limit?: number; status?: 'active' | 'needs_reauth' | 'disconnected' | 'restricted' };
      let qb = cursorFilter(ctx.database.db.selectFrom('accounts').selectAll(), 'id', q.cursor);
      if (q.status) qb = qb.where('status', '=', q.status);
      const rows = await qb.orderBy('id').limit((q.limit ?? 50) + 1).execute();
      return pageOf(rows, q.limit ?? 50, (r) => r.id, accountView);
    });

    app.get('/accounts/:id', {
      schema: { tags: ['accounts'], summary: 'An account: status (and the fix when it cannot send), scopes, token expiry, backfill progress', params: IdParams, response: { 200: Type.Ref(AccountSchema), ...errorResponses(401, 404) } },
    }, async (req) => accountView(await getAccount(ctx.database.db, (req.params as { id: string }).id)));

    app.get('/accounts/:id/health', {
      schema: {
        tags: ['accounts'], summary: "Checks the account at TikTok now (token_info, refreshing an expired token), the app's webhook wiring, and what waits on the account",
        params: IdParams, response: { 200: Type.Ref(HealthSchema), ...errorResponses(401, 404) },
      },
    }, async (req) => accountHealth(ctx, (req.params as { id: string }).id));

    app.post('/accounts/:id/backfill', {
      // The body is optional: a bare POST re-runs with the default period.
      preValidation: async (req) => { if (req.body === undefined || req.body === null) req.body = {}; },
      schema: {
        tags: ['accounts'], summary: 'Reads the recent conversations and messages again (idempotent: nothing is stored twice, history fires no message.received)',
        params: IdParams,
        body: Type.Object({ days: Type.Optional(Type.Integer({ minimum: 1, maximum: 90, description: 'how far back (TikTok keeps 90 days)' })) }, { additionalProperties: false }),
        response: { 202: Type.Ref(AccountSchema), ...errorResponses(400, 401, 403, 404, 422) },
      },
    }, async (req, reply) => {
      requireAdmin(req);
      const id = (req.params as { id: string }).id;
      await requestBackfill(ctx, id, (req.body as { days?: number }).days);
      return reply.code(202).send(accountView(await getAccount(ctx.database.db, id)));
    });

    app.delete('/accounts/:id', {
      schema: {
        tags: ['accounts'], summary: 'Disconnect: revokes the token at TikTok; conversations, messages and contacts stay; webhooks are kept (not delivered) until it reconnects',
        params: IdParams, response: { 200: Type.Ref(AccountSchema), ...errorResponses(401, 403, 404) },
      },
    }, async (req) => {
      requireAdmin(req);
      const acct = await getAccount(ctx.database.db, (req.params as { id: string }).id);
      if (acct.access_token_enc) {
        try {
          await tiktokClient(ctx.config).revoke(ctx.box.open(acct.access_token_enc));
        } catch (err) {
          req.log.warn({ err: err instanceof Error ? err.message : String(err), account_id: acct.id }, 'token revoke at TikTok failed; disconnecting anyway');
        }
      }
      // Tokens are dropped; replies waiting to be sent are held until the account is connected again.
      await setAccountStatus(ctx, acct.id, 'disconnected', 'disconnected by a user; connect it again (/connect/tiktok) to receive and send DMs', {
        access_token_enc: null, refresh_token_enc: null, token_expires_at: null, refresh_expires_at: null, refresh_lock_until: null,
      });
      return accountView(await getAccount(ctx.database.db, acct.id));
    });
  };
}
