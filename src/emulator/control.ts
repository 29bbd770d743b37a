/**
 * The control API under /_control/ (DESIGN.md §8): what TikTok's side of the world does in
 * tests — customers writing, reading and arriving from ads, humans replying in the app, faults,
 * token expiry — plus runtime configuration and counters. No authentication: it only exists in
 * the standalone emulator and in sandbox mode.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { EmulatorContext, RuntimeConfig } from './context.js';
import {
  appendMessage, conversationParties, ensureConversation, findBusiness, findCustomer, noteBusinessMessage,
  noteCustomerMessage, storeMedia, upsertBusiness, upsertCustomer,
} from './directory.js';
import { body, externalBase, normalizeEndpoint, query, str } from './http.js';
import { messageId as newMessageId, randomDigits } from './ids.js';
import { detectImageType, generatePng } from './media.js';
import { checkWindow, RuleViolation, windowState } from './messaging-rules.js';
import { expireAccessTokens, revokeAllTokens } from './oauth.js';
import { euStrippedContent, messageContent, readContent, referralContent, type ReferralInput } from './payloads.js';
import { usesStrippedPayload } from './regions.js';
import { emptyStats, type AdReferral, type BusinessRec, type ConversationRec, type CustomerRec, type MessageRec, type ShortLinkReferral } from './state.js';
import { windowPolicy } from './api-messaging.js';

/** A control-API refusal: plain HTTP status and `{ error, rule? }`. */
export class ControlError extends Error {
  constructor(readonly statusCode: number, message: string, readonly rule?: string) {
    super(message);
  }
}

const DM_TYPES = ['text', 'image', 'share_post', 'sticker', 'video', 'emoji'] as const;

function requireString(b: Record<string, unknown>, field: string): string {
  const v = b[field];
  if (typeof v !== 'string' || v.trim() === '') throw new ControlError(400, `${field} is required`);
  return v.trim();
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** `business` is a username or open_id; it may be left out when exactly one business exists. */
function resolveBusiness(ctx: EmulatorContext, ref: unknown): BusinessRec {
  if (typeof ref === 'string' && ref !== '') {
    const biz = findBusiness(ctx, ref);
    if (!biz) throw new ControlError(404, `unknown business ${ref}`);
    return biz;
  }
  const all = Object.values(ctx.store.data.businesses);
  if (all.length === 1) return all[0]!;
  throw new ControlError(400, all.length === 0 ? 'no business exists yet: POST /_control/businesses first' : 'several businesses exist: say which one with "business"');
}

function resolveConversation(ctx: EmulatorContext, id: unknown): ConversationRec {
  const conv = typeof id === 'string' ? ctx.store.data.conversations[id] : undefined;
  if (!conv) throw new ControlError(404, `unknown conversation_id ${String(id)}`);
  return conv;
}

/** The customer named by `from`, created (default region) when unknown. */
function customerFor(ctx: EmulatorContext, from: string): CustomerRec {
  return findCustomer(ctx, from) ?? upsertCustomer(ctx, { username: from });
}

function stampUrl(base: string, name: string, now: number): string {
  return `${base}/_static/${encodeURIComponent(name)}.png?x-expires=${Math.floor(now / 1000) + 30 * 86_400}`;
}

function buildReferral(input: Record<string, unknown>, ts: number): ReferralInput {
  const source = input['source'];
  if (source === 'ad') {
    const given = obj(input['ad']) ?? {};
    const adId = str(given['ad_id']) ?? randomDigits(19);
    const ad: AdReferral = {
      advertiser_id: str(given['advertiser_id']) ?? randomDigits(19),
      ad_id: adId,
      timestamp: typeof given['timestamp'] === 'number' ? given['timestamp'] : ts,
      ad_name: str(given['ad_name']) ?? 'Emulator ad',
      embed_url: str(given['embed_url']) ?? `https://www.tiktok.com/player/v1/${adId}`,
      message_material_id: str(given['message_material_id']) ?? randomDigits(19),
    };
    return { source: 'ad', ad };
  }
  if (source === 'short_link') {
    const given = obj(input['short_link']) ?? {};
    const status = str(given['prefilled_message_audit_status']) ?? 'PASS';
    const sl: ShortLinkReferral = {
      ref: str(given['ref']) ?? 'emulator',
      prefilled_message: str(given['prefilled_message']) ?? '',
      prefilled_message_audit_status: status,
    };
    return { source: 'short_link', short_link: sl };
  }
  throw new ControlError(400, 'referral source must be "ad" or "short_link"');
}

/** Records the referral on the conversation and pushes im_referral_msg (no message_id, no type). */
function applyReferral(ctx: EmulatorContext, biz: BusinessRec, cust: CustomerRec, conv: ConversationRec, referral: ReferralInput, ts: number): void {
  if (referral.source === 'ad') conv.referrals.ad.push(referral.ad);
  else conv.referrals.short_link.push(referral.short_link);
  conv.update_time = Math.max(conv.update_time, ts);
  ctx.store.changed();
  void ctx.pusher.push('im_referral_msg', biz.open_id, referralContent(biz, cust, conv, referral, ts));
}

function conversationView(ctx: EmulatorContext, conv: ConversationRec): Record<string, unknown> {
  const { biz, cust } = conversationParties(ctx, conv);
  const w = windowState(conv, ctx.clock(), windowPolicy(ctx));
  return {
    conversation_id: conv.conversation_id,
    business_id: biz.open_id, business: biz.username,
    customer_id: cust.unique_identifier, customer: cust.username, customer_region: cust.region,
    type: conv.business_replied ? 'SINGLE' : 'STRANGER',
    last_customer_at: conv.last_customer_at, sent_since: conv.sent_since,
    quota_remaining: w.quota_remaining, expires_at: w.expires_at, window_open: w.open, window_closed_reason: w.reason,
    update_time: conv.update_time, last_read_at: conv.last_read_at, messages: conv.messages.length,
  };
}

/** Applies a /_control/config patch, validating each field's type. */
function applyConfig(config: RuntimeConfig, patch: Record<string, unknown>): void {
  const bool = ['echo_before_response'] as const;
  const nums = ['echo_delay_ms', 'send_delay_ms', 'qps', 'daily_cap', 'window_hours', 'window_quota', 'webhook_concurrency', 'webhook_timeout_ms',
    'access_token_ttl_s', 'refresh_token_ttl_s', 'auth_code_ttl_s'] as const;
  for (const [k, v] of Object.entries(patch)) {
    if ((bool as readonly string[]).includes(k)) {
      if (typeof v !== 'boolean') throw new ControlError(400, `${k} must be a boolean`);
      config[k as (typeof bool)[number]] = v;
    } else if ((nums as readonly string[]).includes(k)) {
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new ControlError(400, `${k} must be a non-negative number`);
      config[k as (typeof nums)[number]] = v;
    } else if (k === 'webhook_retry_delays_ms') {
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && x >= 0)) throw new ControlError(400, `${k} must be an array of non-negative numbers`);
      config.webhook_retry_delays_ms = v as number[];
    } else if (k === 'app_scopes') {
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new ControlError(400, `${k} must be an array of strings`);
      config.app_scopes = v as string[];
    } else {
      throw new ControlError(400, `unknown config field ${k}`);
    }
  }
}

export function registerControlRoutes(app: FastifyInstance, ctx: EmulatorContext, initialConfig: RuntimeConfig): void {
  const P = '/_control';

  app.post(`${P}/businesses`, async (req) => {
    const b = body(req);
    const biz = upsertBusiness(ctx, {
      username: requireString(b, 'username'), region: b['region'], display_name: b['display_name'], followers_count: b['followers_count'],
    });
    return biz;
  });
  app.get(`${P}/businesses`, async () => ({ data: Object.values(ctx.store.data.businesses) }));

  app.post(`${P}/customers`, async (req) => {
    const b = body(req);
    return upsertCustomer(ctx, { username: requireString(b, 'username'), region: b['region'], display_name: b['display_name'], is_follower: b['is_follower'] });
  });
  app.get(`${P}/customers`, async () => ({ data: Object.values(ctx.store.data.customers) }));

  // A customer writes to a business. Answers at once; the webhook is pushed in the background.
  app.post(`${P}/dm`, async (req) => {
    const b = body(req);
    const biz = resolveBusiness(ctx, b['business']);
    const cust = customerFor(ctx, requireString(b, 'from'));
    const conv = ensureConversation(ctx, biz, cust);
    const now = ctx.clock();
    const ts = typeof b['timestamp'] === 'number' ? b['timestamp'] : now;
    const type = (b['type'] ?? 'text') as (typeof DM_TYPES)[number];
    if (!DM_TYPES.includes(type)) throw new ControlError(400, `type must be one of ${DM_TYPES.join(', ')}`);

    const referralInput = obj(b['referral']);
    if (referralInput) applyReferral(ctx, biz, cust, conv, buildReferral(referralInput, ts), ts);

    const msg: MessageRec = {
      message_id: newMessageId(), conversation_id: conv.conversation_id, direction: 'inbound', source: 'APP', type, timestamp: ts,
    };
    const base = externalBase(app, req);
    switch (type) {
      case 'text': {
        const text = b['text'];
        msg.text = { body: typeof text === 'string' ? text : 'Hello' };
        break;
      }
      case 'image': {
        const data = str(obj(b['image'])?.['data_base64']);
        const bytes = data ? Buffer.from(data, 'base64') : generatePng(msg.message_id, 32);
        const id = storeMedia(ctx.store.data, {
          business_id: biz.open_id, mime: detectImageType(bytes) ?? 'application/octet-stream', data_b64: bytes.toString('base64'),
        }, now);
        msg.image = { media_id: id };
        break;
      }
      case 'video': {
        // No real video: a few placeholder bytes so media/download has something to serve.
        const id = storeMedia(ctx.store.data, {
          business_id: biz.open_id, mime: 'video/mp4', data_b64: Buffer.from('emulator video').toString('base64'),
        }, now);
        msg.video = { media_id: id };
        break;
      }
      case 'share_post': {
        const sp = obj(b['share_post']) ?? {};
        const itemId = str(sp['item_id']) ?? randomDigits(19);
        msg.share_post = { item_id: itemId, embed_url: str(sp['embed_url']) ?? `https://www.tiktok.com/embed/v2/${itemId}` };
        break;
      }
      case 'sticker':
        msg.sticker = { url: stampUrl(base, `sticker-${msg.message_id}`, now) };
        break;
      case 'emoji':
        msg.emoji = { url: stampUrl(base, `emoji-${msg.message_id}`, now) };
        break;
    }
    appendMessage(ctx, conv, msg);
    noteCustomerMessage(conv, ts);
    if (usesStrippedPayload(cust.region)) {
      void ctx.pusher.push('im_receive_msg_eu', biz.open_id, euStrippedContent(biz, msg));
    } else {
      void ctx.pusher.push('im_receive_msg', biz.open_id, messageContent(biz, cust, msg));
    }
    return { message_id: msg.message_id, conversation_id: conv.conversation_id };
  });

  app.post(`${P}/referral`, async (req) => {
    const b = body(req);
    const biz = resolveBusiness(ctx, b['business']);
    const cust = customerFor(ctx, requireString(b, 'from'));
    const conv = ensureConversation(ctx, biz, cust);
    const ts = typeof b['timestamp'] === 'number' ? b['timestamp'] : ctx.clock();
    applyReferral(ctx, biz, cust, conv, buildReferral(b, ts), ts);
    return { conversation_id: conv.conversation_id };
  });

  app.post(`${P}/read`, async (req) => {
    const b = body(req);
    const conv = resolveConversation(ctx, b['conversation_id']);
    const { biz, cust } = conversationParties(ctx, conv);
    const now = ctx.clock();
    const lastRead = typeof b['timestamp'] === 'number' ? b['timestamp'] : now;
    conv.last_read_at = Math.max(conv.last_read_at ?? 0, lastRead);
    ctx.store.changed();
    void ctx.pusher.push('im_mark_read_msg', biz.open_id, readContent(biz, cust, conv, lastRead, now));
    return { conversation_id: conv.conversation_id, last_read_timestamp: lastRead };
  });

  // A human replying in the TikTok app: same window and quota as API sends, echo tagged APP.
  app.post(`${P}/app-reply`, async (req) => {
    const b = body(req);
    const conv = resolveConversation(ctx, b['conversation_id']);
    const text = requireString(b, 'text');
    const { biz, cust } = conversationParties(ctx, conv);
    const now = ctx.clock();
    try {
      checkWindow(conv, now, windowPolicy(ctx));
    } catch (err) {
      if (err instanceof RuleViolation) throw new ControlError(409, err.message, err.rule);
      throw err;
    }
    const msg: MessageRec = {
      message_id: newMessageId(), conversation_id: conv.conversation_id, direction: 'outbound', source: 'APP', type: 'text',
      timestamp: now, text: { body: text },
    };
    appendMessage(ctx, conv, msg);
    noteBusinessMessage(ctx, conv, now);
    void ctx.pusher.push('im_send_msg', biz.open_id, messageContent(biz, cust, msg));
    return { message_id: msg.message_id, conversation_id: conv.conversation_id };
  });

  app.post(`${P}/faults`, async (req) => {
    const b = body(req);
    const endpoint = normalizeEndpoint(requireString(b, 'endpoint'));
    const code = b['code'];
    if (typeof code !== 'number' || !Number.isInteger(code)) throw new ControlError(400, 'code must be an integer');
    const times = b['times'] === undefined ? 1 : b['times'];
    if (typeof times !== 'number' || !Number.isInteger(times) || times < 0) throw new ControlError(400, 'times must be a non-negative integer');
    if (times === 0) ctx.faults.delete(endpoint);
    else ctx.faults.set(endpoint, { code, remaining: times, ...(typeof b['message'] === 'string' ? { message: b['message'] } : {}) });
    return { endpoint, code, times };
  });
  app.get(`${P}/faults`, async () => ({ data: [...ctx.faults].map(([endpoint, f]) => ({ endpoint, code: f.code, times: f.remaining })) }));

  app.post(`${P}/tokens/expire`, async (req) => {
    const biz = resolveBusiness(ctx, body(req)['business']);
    expireAccessTokens(ctx, biz.open_id);
    return { business: biz.username, business_id: biz.open_id };
  });

  app.post(`${P}/tokens/revoke`, async (req) => {
    const biz = resolveBusiness(ctx, body(req)['business']);
    revokeAllTokens(ctx, biz.open_id);
    return { business: biz.username, business_id: biz.open_id };
  });

  app.get(`${P}/config`, async () => ctx.config);
  app.post(`${P}/config`, async (req) => {
    applyConfig(ctx.config, body(req));
    return ctx.config;
  });

  app.get(`${P}/sent`, async (req) => {
    const convId = query(req).get('conversation_id');
    const data = convId === null ? ctx.store.data.sent : ctx.store.data.sent.filter((s) => s.conversation_id === convId);
    return { data };
  });

  app.get(`${P}/stats`, async () => ({ ...ctx.stats, sent: ctx.store.data.sent.length }));

  app.get(`${P}/conversations`, async (req) => {
    const convId = query(req).get('conversation_id');
    const list = Object.values(ctx.store.data.conversations).filter((c) => convId === null || c.conversation_id === convId);
    return { data: list.sort((a, b) => b.update_time - a.update_time).map((c) => conversationView(ctx, c)) };
  });

  // Back to a blank emulator (state, counters, faults, queued pushes and configuration).
  app.post(`${P}/reset`, async (req: FastifyRequest) => {
    const keepConfig = body(req)['keep_config'] === true;
    ctx.store.reset();
    ctx.pusher.clear();
    ctx.qps.reset();
    ctx.faults.clear();
    Object.assign(ctx.stats, emptyStats());
    if (!keepConfig) Object.assign(ctx.config, structuredClone(initialConfig));
    return { ok: true };
  });
}
