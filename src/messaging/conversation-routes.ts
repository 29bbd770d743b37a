import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../context.js';
import { notFound } from '../core/errors.js';
import { idFilter } from '../http/filters.js';
import { imageCapabilityForShow } from './image-capability.js';
import { IdParams, Nullable, NullableScalar, NullableString, Query, errorResponses, listOf } from '../http/schemas.js';
import { principalOf } from '../http/principal.js';
import { cursorFilter, pageOf } from '../http/pagination.js';
import { announceEvents, appendEvents, tally } from '../events/outbox.js';
import { WINDOW_POLICIES, windowAt } from './window.js';
import { contactSummary, iso, messageView, type ConversationRow, type ContactRow } from './views.js';
import { parseJson } from '../db/database.js';
import { messageRoutes } from './message-routes.js';
import { repliedBeforeLastInbound } from './queue.js';

const WindowSchema = Type.Object({
  open: Type.Boolean(), expires_at: NullableString(), quota_limit: NullableScalar('integer'), quota_remaining: NullableScalar('integer'),
  can_send_images: NullableScalar('boolean'), blocked: NullableString(),
});
const ContactSummarySchema = Type.Object({ id: Type.String(), username: NullableString(), display_name: NullableString(), is_follower: Type.Boolean() });
export const ConversationSchema = Type.Object({
  id: Type.String(), account_id: Type.String(), status: Type.String(), assignee_id: NullableString(),
  contact: ContactSummarySchema, external_id: Type.String(),
  last_message_at: NullableString(), last_message_preview: NullableString(),
  last_inbound_at: NullableString(), first_unanswered_at: NullableString(),
  referral: Type.Unknown(), window: WindowSchema, created_at: Type.String(),
}, { $id: 'Conversation' });
export const MessageSchema = Type.Object({
  id: Type.String(), conversation_id: Type.String(), account_id: Type.String(), direction: Type.String(), type: Type.String(),
  text: NullableString(), media: Type.Unknown(), share_post: Type.Unknown(), template: Type.Unknown(), unsupported: Type.Unknown(),
  referral: Type.Unknown(), reply_to: NullableString(), status: Type.String(), source: Type.String(), error: Type.Unknown(),
  provider_message_id: NullableString(), sent_by: NullableString(), created_at: NullableString(), updated_at: NullableString(),
  attempts: Type.Optional(Type.Integer({ description: 'outbound: send attempts so far' })),
  next_attempt_at: Type.Optional(NullableString('outbound, queued: when the next attempt is due')),
}, { $id: 'Message' });

/** `repliedBefore`: see repliedBeforeLastInbound (only the `…_then_unlimited` policy looks at it). */
export function conversationView(ctx: AppContext, c: ConversationRow, contact: ContactRow, repliedBefore = false) {
  const policy = WINDOW_POLICIES[ctx.config.tiktokWindowPolicy];
  const w = windowAt(policy, { lastInboundAt: c.last_inbound_at, outboundSinceInbound: c.outbound_since_inbound, repliedBefore }, ctx.clock());
  return {
    id: c.id, account_id: c.account_id, status: c.status, assignee_id: c.assignee_id, contact: contactSummary(contact), external_id: c.external_id,
    last_message_at: iso(c.last_message_at), last_message_preview: c.last_message_preview, last_inbound_at: iso(c.last_inbound_at),
    first_unanswered_at: iso(c.first_unanswered_at),
    referral: parseJson<{ referral?: unknown } | null>(c.referral, null)?.referral ?? null,
    window: {
      open: w.open, expires_at: iso(w.expires_at), quota_limit: w.quota_limit, quota_remaining: w.quota_remaining,
      can_send_images: c.image_capability === null ? null : Boolean(c.image_capability), blocked: w.blocked,
    },
    created_at: iso(c.created_at)!,
  };
}

/** Which of these conversations the window policy treats as replied before (see conversationView). */
async function repliedBeforeOf(ctx: AppContext, convs: ConversationRow[]): Promise<Set<string>> {
  return WINDOW_POLICIES[ctx.config.tiktokWindowPolicy].unlimitedAfterReply ? repliedBeforeLastInbound(ctx.database.db, convs) : new Set();
}

export async function loadConversation(ctx: AppContext, id: string): Promise<{ conv: ConversationRow; contact: ContactRow }> {
  const conv = await ctx.database.db.selectFrom('conversations').selectAll().where('id', '=', id).executeTakeFirst();
  if (!conv) throw notFound('conversation', id);
  const contact = await ctx.database.db.selectFrom('contacts').selectAll().where('id', '=', conv.contact_id).executeTakeFirstOrThrow();
  return { conv, contact };
}

/** Conversations: list, show (with the reply window), history, and the agent workflow. */
export function conversationRoutes(ctx: AppContext): FastifyPluginAsync {
  return async (app) => {
    app.addSchema(ConversationSchema);
    app.addSchema(MessageSchema);
    // POST /messages and GET /messages/{id}, in this scope so they share the Message schema.
    await app.register(messageRoutes(ctx));

    app.get('/conversations', {
      schema: {
        tags: ['conversations'],
        querystring: Query({
          account_id: Type.Optional(Type.String()), status: Type.Optional(Type.Union([Type.Literal('open'), Type.Literal('resolved')])),
          assignee: Type.Optional(Type.String({ description: '`me`, `none`, or a user id' })), contact_id: Type.Optional(Type.String()),
          cursor: Type.Optional(Type.String()), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
        }),
        response: { 200: listOf(Type.Ref(ConversationSchema)), ...errorResponses(400, 401) },
      },
    }, async (req) => {
      const q = req.query as { account_id?: string; status?: string; assignee?: string; contact_id?: string; cursor?: string; limit?: number };
      const limit = q.limit ?? 50;
      let qb = ctx.database.db.selectFrom('conversations').selectAll();
      const accountId = idFilter(q.account_id, 'acct', 'account_id');
      const contactId = idFilter(q.contact_id, 'ct', 'contact_id');
      if (accountId) qb = qb.where('account_id', '=', accountId);
      if (q.status) qb = qb.where('status', '=', q.status as 'open' | 'resolved');
      if (contactId) qb = qb.where('contact_id', '=', contactId);
      if (q.assignee === 'none') qb = qb.where('assignee_id', 'is', null);
      else if (q.assignee === 'me') qb = qb.where('assignee_id', '=', principalOf(req).id);
      // Anything but me, none or a user id is a typo, not a user nobody is assigned to.
      else if (q.assignee) qb = qb.where('assignee_id', '=', idFilter(q.assignee, 'usr', 'assignee', 'me, none or a user id (usr_…)')!);
      const rows = await cursorFilter(qb, 'id', q.cursor, 'desc').orderBy('id', 'desc').limit(limit + 1).execute();
      const contacts = rows.length
        ? new Map((await ctx.database.db.selectFrom('contacts').selectAll().where('id', 'in', [...new Set(rows.map((r) => r.contact_id))]).execute()).map((c) => [c.id, c]))
        : new Map<string, ContactRow>();
      const replied = await repliedBeforeOf(ctx, rows);
      return pageOf(rows, limit, (r) => r.id, (r) => conversationView(ctx, r, contacts.get(r.contact_id)!, replied.has(r.id)));
    });

    app.get('/conversations/:id', {
      schema: { tags: ['conversations'], params: IdParams, response: { 200: Type.Ref(ConversationSchema), ...errorResponses(401, 404) } },
    }, async (req) => {
      const { conv, contact } = await loadConversation(ctx, (req.params as { id: string }).id);
      const view = conversationView(ctx, conv, contact, (await repliedBeforeOf(ctx, [conv])).has(conv.id));
      // While replies can go, the agent should know before picking a picture whether it can be sent.
      if (view.window.open) view.window.can_send_images = await imageCapabilityForShow(ctx, conv);
      return view;
    });

    app.get('/conversations/:id/messages', {
      schema: {
        tags: ['conversations'], params: IdParams,
        querystring: Query({ cursor: Type.Optional(Type.String()), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })), order: Type.Optional(Type.Union([Type.Literal('asc'), Type.Literal('desc')])) }),
        response: { 200: listOf(Type.Ref(MessageSchema)), ...errorResponses(401, 404) },
      },
    }, async (req) => {
      const { id } = req.params as { id: string };
      const q = req.query as { cursor?: string; limit?: number; order?: 'asc' | 'desc' };
      await loadConversation(ctx, id);
      const order = q.order ?? 'asc';
      const rows = await cursorFilter(ctx.database.db.selectFrom('messages').selectAll().where('conversation_id', '=', id), 'id', q.cursor, order)
        .orderBy('id', order).limit((q.limit ?? 50) + 1).execute();
      return pageOf(rows, q.limit ?? 50, (r) => r.id, messageView);
    });

    const workflow = (action: 'assign' | 'resolve' | 'reopen') => async (req: import('fastify').FastifyRequest) => {
      const { id } = req.params as { id: string };
      const { conv, contact } = await loadConversation(ctx, id);
      const now = ctx.clock();
      const body = (req.body ?? {}) as { assignee_id?: string | null };
      const principal = principalOf(req);
      const patch: Partial<ConversationRow> = action === 'assign'
        ? { assignee_id: body.assignee_id === undefined ? (principal.kind === 'user' ? principal.id : null) : body.assignee_id }
        : { status: action === 'resolve' ? 'resolved' : 'open' };
      if (action === 'assign' && patch.assignee_id) {
        const user = await ctx.database.db.selectFrom('users').select('id').where('id', '=', patch.assignee_id).executeTakeFirst();
        if (!user) throw notFound('user', patch.assignee_id);
      }
      const appended = await ctx.database.db.transaction().execute(async (tx) => {
        await tx.updateTable('conversations').set({ ...patch, updated_at: now }).where('id', '=', id).execute();
        const event = action === 'assign' ? 'conversation.assigned' as const : action === 'resolve' ? 'conversation.resolved' as const : 'conversation.reopened' as const;
        return tally(await appendEvents(tx, [{
          event, account_id: conv.account_id, provider: 'tiktok', conversation_id: id,
          data: { conversation_id: id, contact: contactSummary(contact), assignee_id: patch.assignee_id ?? conv.assignee_id, status: patch.status ?? conv.status, by: principal.id },
        }], now));
      });
      announceEvents(ctx.bus, appended);
      return conversationView(ctx, { ...conv, ...patch }, contact, (await repliedBeforeOf(ctx, [conv])).has(conv.id));
    };

    app.post('/conversations/:id/assign', {
      schema: {
        tags: ['conversations'], summary: 'Assign to a user (default: the caller when signed in); assignee_id null unassigns', params: IdParams,
        body: Type.Optional(Type.Object({ assignee_id: Type.Optional(Nullable(Type.String())) }, { additionalProperties: false })),
        response: { 200: Type.Ref(ConversationSchema), ...errorResponses(400, 401, 404) },
      },
      // The body may be left out (assign to me); the schema then checks `{}` instead of nothing.
      preValidation: async (req) => { req.body ??= {}; },
    }, workflow('assign'));
    app.post('/conversations/:id/resolve', { schema: { tags: ['conversations'], params: IdParams, response: { 200: Type.Ref(ConversationSchema), ...errorResponses(401, 404) } } }, workflow('resolve'));
    app.post('/conversations/:id/reopen', { schema: { tags: ['conversations'], params: IdParams, response: { 200: Type.Ref(ConversationSchema), ...errorResponses(401, 404) } } }, workflow('reopen'));
  };
}
