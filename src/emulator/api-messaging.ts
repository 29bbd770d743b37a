/**
 * The Business Messaging endpoints under business/message/ (tiktok-api.md §2.2–2.4): send with
 * the messaging rules, media upload/download, capabilities, and the conversation and content
 * lists. Also the emulator-hosted URLs those answers point at (/_media, /_static).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { EmulatorContext } from './context.js';
import { invalidParam, TikTokError } from './envelope.js';
import { appendMessage, conversationParties, noteBusinessMessage, storeMedia } from './directory.js';
import { body, externalBase, query, runAfterResponse, str, tiktokRoute } from './http.js';
import { messageId as newMessageId } from './ids.js';
import { detectImageType, generatePng, MAX_UPLOAD_BYTES } from './media.js';
import {
  checkDailyCap, checkWindow, QPS_MESSAGE, RuleViolation, validateOutbound, type WindowPolicy,
} from './messaging-rules.js';
import { authenticate } from './oauth.js';
import { customerParticipant, businessParticipant, messageContent, restMessage, type UrlBase } from './payloads.js';
import { blocksImages } from './regions.js';
import type { BusinessRec, ConversationRec, MessageRec } from './state.js';
import { jsonStringArray } from './api-business.js';

const DOWNLOAD_URL_TTL_S = 86_400;          // download_url lives 24 h
const HISTORY_MS = 90 * 86_400_000;         // conversation/list covers 90 days
const CONTENT_LIST_LIMIT = 20;              // content/list returns the 20 latest messages

export function windowPolicy(ctx: EmulatorContext): WindowPolicy {
  return { windowHours: ctx.config.window_hours, quota: ctx.config.window_quota };
}

/** QPS applies per business across every business/message/* endpoint. */
function enforceQps(ctx: EmulatorContext, biz: BusinessRec): void {
  if (!ctx.qps.tryAcquire(biz.open_id, ctx.config.qps)) throw new RuleViolation('qps', 40100, QPS_MESSAGE);
}

/** The conversation named by `id`, which must belong to `biz`; otherwise TikTok's "Param … is invalid.". */
function ownConversation(ctx: EmulatorContext, biz: BusinessRec, id: unknown, field: string, asContentViolation = false): ConversationRec {
  const conv = typeof id === 'string' ? ctx.store.data.conversations[id] : undefined;
  if (conv && conv.business_id === biz.open_id) return conv;
  const why = typeof id === 'string' && id !== '' ? 'is invalid' : 'is required';
  if (asContentViolation) throw new RuleViolation('content', 40002, `Param ${field} ${why}.`);
  throw invalidParam(field, why);
}

function urlBase(app: FastifyInstance, ctx: EmulatorContext, req: FastifyRequest): UrlBase {
  return { base: externalBase(app, req), now: ctx.clock() };
}

function mediaSignature(ctx: EmulatorContext, id: string, expires: string): string {
  return createHmac('sha256', ctx.appSecret).update(`media.${id}.${expires}`).digest('hex').slice(0, 32);
}

export function registerMessagingRoutes(app: FastifyInstance, ctx: EmulatorContext): void {
  tiktokRoute(app, ctx, 'POST', 'business/message/send/', async (req, reply) => {
    const b = body(req);
    const biz = authenticate(ctx, req, b['business_id'], 'message.list.send');
    enforceQps(ctx, biz);
    if (b['recipient_type'] !== 'CONVERSATION') throw new RuleViolation('content', 40002, 'Param recipient_type must be CONVERSATION.');
    const conv = ownConversation(ctx, biz, b['recipient'], 'recipient', true);
    const { cust } = conversationParties(ctx, conv);
    const now = ctx.clock();
    const out = validateOutbound(b, {
      biz, cust, conv, now,
      findMedia: (id) => ctx.store.data.media[id],
      findMessage: (id) => conv.messages.find((m) => m.message_id === id),
    });

    if (out.message_type === 'SENDER_ACTION') {
      // Typing / mark-read use no quota and are not messages: message_id comes back "".
      checkWindow(conv, now, windowPolicy(ctx), { quota: false });
      ctx.stats.sender_actions++;
      return { message: { message_id: '' } };
    }
    checkWindow(conv, now, windowPolicy(ctx));
    checkDailyCap(ctx.store.data.daily, biz.open_id, conv.conversation_id, now, ctx.config.daily_cap);

    const rec: MessageRec = {
      message_id: newMessageId(), conversation_id: conv.conversation_id, direction: 'outbound', source: 'API',
      type: out.message_type.toLowerCase() as MessageRec['type'], timestamp: now,
    };
    if (out.text) rec.text = out.text;
    if (out.image) rec.image = out.image;
    if (out.share_post) rec.share_post = { item_id: out.share_post.item_id, embed_url: `https://www.tiktok.com/embed/v2/${out.share_post.item_id}` };
    if (out.template) rec.template = out.template;
    if (out.referenced_message_info) rec.referenced_message_info = out.referenced_message_info;
    appendMessage(ctx, conv, rec);
    noteBusinessMessage(ctx, conv, now);
    ctx.store.data.sent.push({
      message_id: rec.message_id, conversation_id: conv.conversation_id, business_id: biz.open_id, business_username: biz.username,
      customer_id: cust.unique_identifier, message_type: out.message_type, text: out.text ?? null, image: out.image ?? null,
      share_post: out.share_post ?? null, template: out.template ?? null, referenced_message_info: out.referenced_message_info ?? null,
      timestamp: now,
    });

    // The im_send_msg echo. With echo_before_response the first delivery attempt completes before
    // this call answers: the race real clients see when TikTok's echo overtakes the response.
    const echo = () => ctx.pusher.push('im_send_msg', biz.open_id, messageContent(biz, cust, rec));
    if (ctx.config.echo_before_response) {
      await echo();
    } else {
      const delay = ctx.config.echo_delay_ms;
      runAfterResponse(reply, () => {
        if (delay > 0) setTimeout(() => void echo(), delay).unref();
        else void echo();
      });
    }
    if (ctx.config.send_delay_ms > 0) await new Promise((resolve) => setTimeout(resolve, ctx.config.send_delay_ms));
    return { message: { message_id: rec.message_id } };
  });

  tiktokRoute(app, ctx, 'POST', 'business/message/media/upload/', async (req) => {
    if (!req.isMultipart()) throw new TikTokError(40002, 'The request must be multipart/form-data with business_id, media_type and file.');
    const fields: Record<string, string> = {};
    let file: Buffer | undefined;
    let truncated = false;
    try {
      // Read everything first (business_id may follow the file); busboy truncates beyond 3 MB.
      // throwFileSizeLimit is honoured by parts() at run time though its type does not list it.
      const opts = { limits: { fileSize: MAX_UPLOAD_BYTES }, throwFileSizeLimit: false } as Parameters<typeof req.parts>[0];
      for await (const part of req.parts(opts)) {
        if (part.type === 'file') {
          const chunks: Buffer[] = [];
          for await (const c of part.file) chunks.push(c as Buffer);
          if (part.fieldname === 'file' && file === undefined) { file = Buffer.concat(chunks); truncated = part.file.truncated; }
        } else {
          fields[part.fieldname] = String(part.value);
        }
      }
    } catch (err) {
      req.log.debug({ err }, 'emulator: multipart parse failed');
      throw new TikTokError(40002, 'The multipart body could not be parsed.');
    }
    const biz = authenticate(ctx, req, fields['business_id'], 'message.list.send');
    enforceQps(ctx, biz);
    if (fields['media_type'] !== 'IMAGE') throw invalidParam('media_type');
    if (file === undefined) throw invalidParam('file', 'is required');
    // Upload refusals count as content violations: a gateway should have checked before uploading.
    if (file.length === 0) throw new RuleViolation('content', 40906, 'The file is empty.');
    if (truncated) throw new RuleViolation('content', 40907, 'The file size exceeds the limit (3 MB).');
    const mime = detectImageType(file);
    if (!mime) throw new RuleViolation('content', 40908, 'Unsupported file type. Only JPG and PNG images are accepted.');
    const id = storeMedia(ctx.store.data, { business_id: biz.open_id, mime, data_b64: file.toString('base64') }, ctx.clock());
    ctx.store.changed();
    return { media_id: id };
  });

  tiktokRoute(app, ctx, 'POST', 'business/message/media/download/', async (req) => {
    const b = body(req);
    const biz = authenticate(ctx, req, b['business_id'], 'message.list.read');
    enforceQps(ctx, biz);
    const conv = ownConversation(ctx, biz, b['conversation_id'], 'conversation_id');
    const msgId = str(b['message_id']);
    if (!msgId) throw invalidParam('message_id', 'is required');
    const msg = conv.messages.find((m) => m.message_id === msgId);
    if (!msg) throw invalidParam('message_id');
    const mediaType = b['media_type'];
    if (mediaType !== 'IMAGE' && mediaType !== 'VIDEO') throw invalidParam('media_type');
    const carried = mediaType === 'IMAGE' ? msg.image?.media_id : msg.video?.media_id;
    const id = str(b['media_id']);
    if (!id) throw invalidParam('media_id', 'is required');
    if (carried !== id) throw invalidParam('media_id');
    const stored = ctx.store.data.media[id];
    if (!stored || stored.expires_at <= ctx.clock()) throw new TikTokError(40007);
    const expires = String(Math.floor(ctx.clock() / 1000) + DOWNLOAD_URL_TTL_S);
    const url = `${externalBase(app, req)}/_media/${encodeURIComponent(id)}?x-expires=${expires}&x-signature=${mediaSignature(ctx, id, expires)}`;
    return { download_url: url };
  });

  tiktokRoute(app, ctx, 'GET', 'business/message/capabilities/get/', async (req) => {
    const q = query(req);
    const biz = authenticate(ctx, req, q.get('business_id'), 'message.list.read');
    enforceQps(ctx, biz);
    const conv = ownConversation(ctx, biz, q.get('conversation_id'), 'conversation_id');
    const type = q.get('conversation_type');
    if (type !== 'SINGLE' && type !== 'STRANGER') throw invalidParam('conversation_type');
    const types = jsonStringArray(q.get('capability_types'), 'capability_types');
    if (!types || types.length === 0) throw invalidParam('capability_types', 'is required');
    const { cust } = conversationParties(ctx, conv);
    return {
      capability_infos: types.map((t) => {
        if (t !== 'IMAGE_SEND') throw invalidParam('capability_types');
        // Both sides must be in markets where DM images are available (seed 001).
        return { capability_type: t, capability_result: !blocksImages(biz.region) && !blocksImages(cust.region) };
      }),
    };
  });

  tiktokRoute(app, ctx, 'GET', 'business/message/conversation/list/', async (req) => {
    const q = query(req);
    const biz = authenticate(ctx, req, q.get('business_id'), 'message.list.read');
    enforceQps(ctx, biz);
    const type = q.get('conversation_type');
    if (type !== 'STRANGER' && type !== 'SINGLE') throw invalidParam('conversation_type', type ? 'is invalid' : 'is required');
    const limitRaw = q.get('limit');
    const limit = limitRaw === null || limitRaw === '' ? 100 : Number(limitRaw);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw invalidParam('limit');
    const cursorRaw = q.get('cursor');
    const cursor = cursorRaw === null || cursorRaw === '' ? 0 : Number(cursorRaw);
    if (!Number.isInteger(cursor) || cursor < 0) throw invalidParam('cursor');
    const since = ctx.clock() - HISTORY_MS;
    const all = Object.values(ctx.store.data.conversations)
      .filter((c) => c.business_id === biz.open_id && c.update_time >= since && c.business_replied === (type === 'SINGLE'))
      .sort((a, b) => b.update_time - a.update_time || a.conversation_id.localeCompare(b.conversation_id));
    const page = all.slice(cursor, cursor + limit);
    return {
      conversations: page.map((c) => {
        const item: Record<string, unknown> = { conversation_id: c.conversation_id, update_time: c.update_time };
        if (c.referrals.ad.length > 0 || c.referrals.short_link.length > 0) {
          const referral: Record<string, unknown> = {};
          // Here the ad timestamp is in SECONDS (the webhook carries ms): TikTok's inconsistency, kept.
          if (c.referrals.ad.length > 0) referral['ad'] = c.referrals.ad.map((a) => ({ ...a, timestamp: Math.floor(a.timestamp / 1000) }));
          if (c.referrals.short_link.length > 0) referral['short_link'] = c.referrals.short_link;
          item['referral'] = referral;
        }
        return item;
      }),
      has_more: cursor + page.length < all.length,
      cursor: cursor + page.length,
    };
  });

  tiktokRoute(app, ctx, 'GET', 'business/message/content/list/', async (req) => {
    const q = query(req);
    const biz = authenticate(ctx, req, q.get('business_id'), 'message.list.read');
    enforceQps(ctx, biz);
    const conv = ownConversation(ctx, biz, q.get('conversation_id'), 'conversation_id');
    const { cust } = conversationParties(ctx, conv);
    const urls = urlBase(app, ctx, req);
    // Emulator assumption: the 20 latest messages, oldest first (TikTok's order is undocumented).
    const latest = conv.messages.slice(-CONTENT_LIST_LIMIT);
    return {
      messages: latest.map((m) => restMessage(biz, cust, m, urls)),
      participants: [businessParticipant(biz, urls), customerParticipant(cust, urls)],
    };
  });

  // download_url target: bytes only with `x-user: <access token>` of the owning business.
  app.get<{ Params: { id: string } }>('/_media/:id', async (req, reply) => {
    const q = query(req);
    const id = req.params.id;
    const expires = q.get('x-expires') ?? '';
    const sig = q.get('x-signature') ?? '';
    const expected = mediaSignature(ctx, id, expires);
    const sigOk = sig.length === expected.length && timingSafeEqual(Buffer.from(sig), Buffer.from(expected));
    if (!sigOk || !(Number(expires) * 1000 > ctx.clock())) return reply.code(403).send({ error: 'the link is invalid or has expired' });
    const media = ctx.store.data.media[id];
    const userHeader = req.headers['x-user'];
    const token = Array.isArray(userHeader) ? userHeader[0] : userHeader;
    const tok = token ? ctx.store.data.access_tokens[token] : undefined;
    if (!media || !tok || tok.revoked || tok.expires_at <= ctx.clock() || tok.business_id !== media.business_id) {
      return reply.code(403).send({ error: 'x-user must carry a valid access token of the business' });
    }
    return reply.type(media.mime).send(Buffer.from(media.data_b64, 'base64'));
  });

  // Generated images for profile pictures and stickers: public, like TikTok's CDN links.
  app.get<{ Params: { name: string } }>('/_static/:name', async (req, reply) => {
    return reply.type('image/png').header('cache-control', 'public, max-age=86400').send(generatePng(req.params.name));
  });
}
