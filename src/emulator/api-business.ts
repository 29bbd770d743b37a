/**
 * business/get/ and the app-level webhook registration endpoints (tiktok-api.md §2.2, §3.1).
 */
import type { FastifyInstance } from 'fastify';
import type { EmulatorContext } from './context.js';
import { invalidParam, TikTokError } from './envelope.js';
import { body, externalBase, query, tiktokRoute } from './http.js';
import { authenticate } from './oauth.js';
import { avatarUrl } from './payloads.js';

const EVENT_TYPES = ['DIRECT_MESSAGE', 'VIDEO', 'COMMENT', 'BRAND_MENTION', 'DEFAULT'];
const DEFAULT_FIELDS = ['username', 'display_name', 'profile_image'];

/** The webhook endpoints authenticate with app_id + secret, no token. */
function checkAppSecret(ctx: EmulatorContext, appId: unknown, secret: unknown): void {
  if (typeof appId !== 'string' || appId === '') throw invalidParam('app_id', 'is required');
  if (appId !== ctx.appId) throw new TikTokError(40113);
  if (typeof secret !== 'string' || secret === '') throw invalidParam('secret', 'is required');
  if (secret !== ctx.appSecret) throw new TikTokError(40101);
}

function eventType(v: unknown): string {
  if (typeof v !== 'string' || !EVENT_TYPES.includes(v)) throw invalidParam('event_type');
  return v;
}

/** Parses a JSON-array-of-strings query parameter such as fields='["username"]'. */
export function jsonStringArray(raw: string | null, field: string): string[] | null {
  if (raw === null || raw === '') return null;
  let v: unknown;
  try { v = JSON.parse(raw); } catch { throw invalidParam(field); }
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw invalidParam(field);
  return v as string[];
}

export function registerBusinessRoutes(app: FastifyInstance, ctx: EmulatorContext): void {
  tiktokRoute(app, ctx, 'GET', 'business/get/', async (req) => {
    const q = query(req);
    const biz = authenticate(ctx, req, q.get('business_id'));
    const fields = jsonStringArray(q.get('fields'), 'fields') ?? DEFAULT_FIELDS;
    const all: Record<string, unknown> = {
      username: biz.username,
      display_name: biz.display_name,
      profile_image: avatarUrl({ base: externalBase(app, req), now: ctx.clock() }, biz.open_id),
      followers_count: biz.followers_count,
    };
    const out: Record<string, unknown> = {};
    for (const f of fields) if (f in all) out[f] = all[f];
    // Emulator assumption: TikTok's business/get has no documented region field. The emulator
    // always adds one so a gateway can learn the account's region (image capability, EU rules).
    out['region'] = biz.region;
    return out;
  });

  tiktokRoute(app, ctx, 'POST', 'business/webhook/update/', async (req) => {
    const b = body(req);
    checkAppSecret(ctx, b['app_id'], b['secret']);
    const type = eventType(b['event_type']);
    const url = b['callback_url'];
    let ok = false;
    if (typeof url === 'string') {
      try { ok = ['http:', 'https:'].includes(new URL(url).protocol); } catch { ok = false; }
    }
    if (!ok) throw invalidParam('callback_url');
    ctx.store.data.webhooks[type] = { callback_url: url as string };
    ctx.store.changed();
    return { app_id: ctx.appId, event_type: type, callback_url: url };
  });

  tiktokRoute(app, ctx, 'GET', 'business/webhook/list/', async (req) => {
    const q = query(req);
    checkAppSecret(ctx, q.get('app_id'), q.get('secret'));
    const type = eventType(q.get('event_type'));
    const reg = ctx.store.data.webhooks[type];
    // With no subscription, callback_url is absent (not null).
    return reg ? { app_id: ctx.appId, event_type: type, callback_url: reg.callback_url } : { app_id: ctx.appId, event_type: type };
  });

  tiktokRoute(app, ctx, 'POST', 'business/webhook/delete/', async (req) => {
    const b = body(req);
    checkAppSecret(ctx, b['app_id'], b['secret']);
    const type = eventType(b['event_type']);
    delete ctx.store.data.webhooks[type];
    ctx.store.changed();
    return { app_id: ctx.appId, event_type: type };
  });
}
