import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../context.js';
import { IdParams, ListQuery, Nullable, errorResponses, listOf } from '../http/schemas.js';
import { requireAdmin } from '../http/principal.js';
import { accountView, getAccount, setAccountStatus } from './store.js';
import { tiktokClient } from '../providers/tiktok/provider.js';
import { pageOf, cursorFilter } from '../http/pagination.js';

export const AccountSchema = Type.Object({
  id: Type.String(), provider: Type.String(), external_id: Type.String(),
  username: Nullable(Type.String()), display_name: Nullable(Type.String()), avatar_url: Nullable(Type.String()), region: Nullable(Type.String()),
  status: Type.Union([Type.Literal('active'), Type.Literal('needs_reauth'), Type.Literal('disconnected'), Type.Literal('restricted')]),
  status_reason: Nullable(Type.String()),
  scopes: Type.Array(Type.String()),
  token_expires_at: Nullable(Type.String()), refresh_token_expires_at: Nullable(Type.String()),
  backfill: Nullable(Type.Record(Type.String(), Type.Unknown())),
  created_at: Type.String(),
}, { $id: 'Account' });

export function accountRoutes(ctx: AppContext): FastifyPluginAsync {
  return async (app) => {
    app.addSchema(AccountSchema);

    app.get('/accounts', {
      schema: { tags: ['accounts'], querystring: ListQuery, response: { 200: listOf(Type.Ref(AccountSchema)), ...errorResponses(400, 401) } },
    }, async (req) => {
      const q = req.query as { cursor?: string; limit?: number };
      const rows = await cursorFilter(ctx.database.db.selectFrom('accounts').selectAll(), 'id', q.cursor).orderBy('id').limit((q.limit ?? 50) + 1).execute();
      return pageOf(rows, q.limit ?? 50, (r) => r.id, accountView);
    });

    app.get('/accounts/:id', {
      schema: { tags: ['accounts'], params: IdParams, response: { 200: Type.Ref(AccountSchema), ...errorResponses(401, 404) } },
    }, async (req) => accountView(await getAccount(ctx.database.db, (req.params as { id: string }).id)));

    app.delete('/accounts/:id', {
      schema: {
        tags: ['accounts'], summary: 'Disconnect: revokes the token at TikTok; conversations, messages and contacts stay',
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
      await setAccountStatus(ctx, acct.id, 'disconnected', 'disconnected by a user', {
        access_token_enc: null, refresh_token_enc: null, token_expires_at: null, refresh_expires_at: null,
      });
      // Replies waiting to be sent are held until the account is connected again.
      await ctx.database.db.updateTable('messages').set({ status: 'held', updated_at: ctx.clock() })
        .where('account_id', '=', acct.id).where('status', '=', 'queued').execute();
      return accountView(await getAccount(ctx.database.db, acct.id));
    });
  };
}
