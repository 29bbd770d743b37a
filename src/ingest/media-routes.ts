import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { AppContext } from '../context.js';
import { ApiError, notFound } from '../core/errors.js';
import { IdParams, errorResponses } from '../http/schemas.js';
import { withAccessToken } from '../accounts/tokens.js';
import { tiktokClient } from '../providers/tiktok/provider.js';
import { gateFor, paced } from '../messaging/rate-gate.js';
import { parseJson } from '../db/database.js';

const MAX_MEDIA_BYTES = 50 * 1024 * 1024;

/** Types a browser may show inline from our origin (the inbox's); HTML, SVG and the rest can hold script. */
const INLINE_TYPES = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp', 'video/mp4', 'video/quicktime', 'video/webm']);

/**
 * Media bytes come from customers, and their type from TikTok's CDN: served from the inbox's origin,
 * anything not plainly an image or a video is a download, never sniffed, and no script runs in it
 * even when opened on its own.
 */
function sendMedia(reply: FastifyReply, contentType: string | null, bytes: Uint8Array) {
  const type = (contentType ?? '').split(';')[0].trim().toLowerCase();
  const inline = INLINE_TYPES.has(type);
  return reply.type(inline ? type : 'application/octet-stream')
    .header('content-disposition', inline ? 'inline' : 'attachment')
    .header('x-content-type-options', 'nosniff')
    .header('content-security-policy', "default-src 'none'; sandbox")
    .header('cache-control', 'private, max-age=86400')
    .send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
}

/**
 * Inbound media through the gateway: TikTok's download URLs expire after 24 h and need the access
 * token, so the first read fetches the bytes and keeps them.
 */
export function mediaRoutes(ctx: AppContext): FastifyPluginAsync {
  return async (app) => {
    app.get('/media/:id', {
      schema: {
        tags: ['media'], params: IdParams, summary: 'The bytes of an inbound image or video',
        response: { 200: { description: 'the media bytes', content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } }, ...errorResponses(401, 404, 502) },
      },
    }, async (req, reply) => {
      const { id } = req.params as { id: string };
      const media = await ctx.database.db.selectFrom('media').selectAll().where('id', '=', id).executeTakeFirst();
      if (!media) throw notFound('media', id);
      if (media.data) {
        return sendMedia(reply, media.content_type, media.data);
      }
      if (!media.message_id || !media.account_id || !media.provider_media_id) throw notFound('media', id);
      const msg = await ctx.database.db.selectFrom('messages').innerJoin('conversations', 'conversations.id', 'messages.conversation_id')
        .innerJoin('accounts', 'accounts.id', 'messages.account_id')
        .select(['messages.provider_message_id', 'messages.media', 'conversations.external_id as conversation_external_id', 'accounts.external_id as business_id'])
        .where('messages.id', '=', media.message_id).executeTakeFirst();
      if (!msg?.provider_message_id) throw notFound('media', id);
      const kind = parseJson<{ kind?: string }>(msg.media, {}).kind === 'video' ? 'VIDEO' : 'IMAGE';
      const client = tiktokClient(ctx.config);
      let fetched;
      try {
        const gate = gateFor(ctx, media.account_id);
        fetched = await withAccessToken(ctx, media.account_id, async (token) => {
          // The download URL is a messaging call, counted with the account's sends (rate-gate.ts); the CDN fetch is not.
          const url = await paced(gate, () => client.mediaDownloadUrl(token, msg.business_id, msg.conversation_external_id, msg.provider_message_id!, media.provider_media_id!, kind));
          return client.fetchMedia(token, url, MAX_MEDIA_BYTES);
        });
      } catch (err) {
        if (err instanceof ApiError) throw err;
        throw new ApiError('provider_error', 'TikTok did not return the media', { reason: err instanceof Error ? err.message : String(err) });
      }
      await ctx.database.db.updateTable('media').set({ data: fetched.bytes, content_type: fetched.contentType, size: fetched.bytes.length }).where('id', '=', id).execute();
      return sendMedia(reply, fetched.contentType, fetched.bytes);
    });
  };
}
