import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../context.js';
import { notFound } from '../core/errors.js';
import { IdParams, errorResponses } from '../http/schemas.js';
import { principalOf } from '../http/principal.js';
import { acceptReply, type ReplyRequest } from './accept.js';
import { MessageSchema } from './conversation-routes.js';
import { messageView, iso, type MessageRow } from './views.js';

const ImageInput = Type.Object({
  url: Type.Optional(Type.String({ description: 'http(s) URL of a JPG or PNG (≤ 3 MB), fetched by the gateway' })),
  data_base64: Type.Optional(Type.String({ description: 'the JPG or PNG bytes, base64' })),
  media_id: Type.Optional(Type.String({ description: 'a gateway media id (`med_…`, e.g. an image a customer sent) or a TikTok media_id you uploaded' })),
}, { additionalProperties: false, description: 'exactly one of url, data_base64, media_id' });

const TemplateInput = Type.Object({
  type: Type.Optional(Type.Union([Type.Literal('QA_BUTTON_CARD'), Type.Literal('QA_LINK_CARD')], { default: undefined, description: 'default QA_BUTTON_CARD' })),
  title: Type.String({ description: '1–40 characters' }),
  buttons: Type.Array(Type.Object({
    title: Type.String({ description: '1–20 characters (40 on a link card)' }),
    id: Type.Optional(Type.String({ description: '1–40 characters; default the option number' })),
  }, { additionalProperties: false }), { description: '1–3 buttons' }),
  as_text: Type.Optional(Type.Boolean({ description: 'send as plain text with numbered options; a customer answering with a number or an option is linked to it (`extra.template_answer` on message.received)' })),
}, { additionalProperties: false });

export const ReplyBody = Type.Object({
  conversation_id: Type.String({ minLength: 1 }),
  type: Type.Union([Type.Literal('text'), Type.Literal('image'), Type.Literal('share_post'), Type.Literal('template')]),
  text: Type.Optional(Type.String({ description: 'up to 6000 characters (code points)' })),
  image: Type.Optional(ImageInput),
  share_post: Type.Optional(Type.Object({ item_id: Type.String({ minLength: 1, maxLength: 128, description: 'one of the business\'s own posts' }) }, { additionalProperties: false })),
  template: Type.Optional(TemplateInput),
  reply_to: Type.Optional(Type.String({ description: 'id of a text, image or share_post message of this conversation to quote (text replies only)' })),
}, { additionalProperties: false });


export function outboundView(m: MessageRow) {
  return { ...messageView(m), attempts: m.attempts, next_attempt_at: m.status === 'queued' ? iso(m.next_attempt_at) : null };
}

/** POST /v1/messages (accept a reply, policy first) and GET /v1/messages/{id}. */
export function messageRoutes(ctx: AppContext): FastifyPluginAsync {
  return async (app) => {
    const OutboundMessageSchema = Type.Ref(MessageSchema);
    app.post('/messages', {
      schema: {
        tags: ['messages'],
        summary: 'Send a reply: every TikTok rule is checked now; 202 with the queued message, or an error naming the rule',
        headers: Type.Object({ 'idempotency-key': Type.Optional(Type.String({ description: 'same key and body: the same message, sent once; same key, other body: 409' })) }),
        body: ReplyBody,
        response: { 202: OutboundMessageSchema, ...errorResponses(400, 401, 404, 409, 413, 422, 502) },
      },
    }, async (req, reply) => {
      const principal = principalOf(req);
      const key = req.headers['idempotency-key'];
      const { message, replayed } = await acceptReply(ctx, req.body as ReplyRequest, {
        source: principal.kind === 'user' ? 'inbox' : 'api',
        sentBy: principal.id,
        idempotencyKey: typeof key === 'string' ? key : undefined,
      });
      let current = message;
      if (replayed) {
        // The same message as the first time, in its current state; nothing is sent again.
        reply.header('idempotent-replayed', 'true');
        current = (await ctx.database.db.selectFrom('messages').selectAll().where('id', '=', message.id).executeTakeFirst()) ?? message;
      }
      return reply.code(202).header('location', `/v1/messages/${message.id}`).send(outboundView(current));
    });

    app.get('/messages/:id', {
      schema: { tags: ['messages'], summary: 'A message: status, error, TikTok id', params: IdParams, response: { 200: OutboundMessageSchema, ...errorResponses(401, 404) } },
    }, async (req) => {
      const { id } = req.params as { id: string };
      const m = await ctx.database.db.selectFrom('messages').selectAll().where('id', '=', id).executeTakeFirst();
      if (!m) throw notFound('message', id);
      return outboundView(m);
    });
  };
}
