/**
 * Businesses, customers and conversations: creation (idempotent, with deterministic ids) and
 * lookup by username or id.
 */
import type { EmulatorContext } from './context.js';
import { businessOpenId, conversationId, customerUniqueId, mediaId } from './ids.js';
import { MEDIA_TTL_MS } from './media.js';
import { recordDailyReply } from './messaging-rules.js';
import { normalizeRegion } from './regions.js';
import { MAX_MESSAGES_PER_CONVERSATION, type BusinessRec, type ConversationRec, type CustomerRec, type MediaRec, type MessageRec, type StateData } from './state.js';

export interface BusinessInput { username: string; region?: unknown; display_name?: unknown; followers_count?: unknown }
export interface CustomerInput { username: string; region?: unknown; display_name?: unknown; is_follower?: unknown }

/** Creates the business, or updates the fields given for an existing one (idempotent by username). */
export function upsertBusiness(ctx: EmulatorContext, input: BusinessInput): BusinessRec {
  const id = businessOpenId(ctx.appId, input.username);
  const data = ctx.store.data;
  const existing = data.businesses[id];
  const rec: BusinessRec = existing ?? {
    open_id: id, username: input.username, display_name: input.username, region: normalizeRegion(undefined),
    followers_count: 0, created_at: ctx.clock(),
  };
  if (input.region !== undefined) rec.region = normalizeRegion(input.region);
  if (typeof input.display_name === 'string') rec.display_name = input.display_name;
  if (typeof input.followers_count === 'number') rec.followers_count = input.followers_count;
  data.businesses[id] = rec;
  ctx.store.changed();
  return rec;
}

export function upsertCustomer(ctx: EmulatorContext, input: CustomerInput): CustomerRec {
  const id = customerUniqueId(ctx.appId, input.username);
  const data = ctx.store.data;
  const existing = data.customers[id];
  const rec: CustomerRec = existing ?? {
    unique_identifier: id, username: input.username, display_name: input.username, region: normalizeRegion(undefined),
    is_follower: false, created_at: ctx.clock(),
  };
  if (input.region !== undefined) rec.region = normalizeRegion(input.region);
  if (typeof input.display_name === 'string') rec.display_name = input.display_name;
  if (typeof input.is_follower === 'boolean') rec.is_follower = input.is_follower;
  data.customers[id] = rec;
  ctx.store.changed();
  return rec;
}

/** By open_id or username (ids are derived from usernames, so both are direct lookups). */
export function findBusiness(ctx: EmulatorContext, ref: string): BusinessRec | undefined {
  const b = ctx.store.data.businesses;
  return b[ref] ?? b[businessOpenId(ctx.appId, ref)];
}

export function findCustomer(ctx: EmulatorContext, ref: string): CustomerRec | undefined {
  const c = ctx.store.data.customers;
  return c[ref] ?? c[customerUniqueId(ctx.appId, ref)];
}

export function ensureConversation(ctx: EmulatorContext, biz: BusinessRec, cust: CustomerRec): ConversationRec {
  const id = conversationId(biz.open_id, cust.unique_identifier);
  const data = ctx.store.data;
  let conv = data.conversations[id];
  if (!conv) {
    const now = ctx.clock();
    conv = {
      conversation_id: id, business_id: biz.open_id, customer_id: cust.unique_identifier, created_at: now, update_time: now,
      last_customer_at: null, sent_since: 0, business_replied: false, last_read_at: null,
      referrals: { ad: [], short_link: [] }, messages: [],
    };
    data.conversations[id] = conv;
    ctx.store.changed();
  }
  return conv;
}

export function conversationParties(ctx: EmulatorContext, conv: ConversationRec): { biz: BusinessRec; cust: CustomerRec } {
  const biz = ctx.store.data.businesses[conv.business_id];
  const cust = ctx.store.data.customers[conv.customer_id];
  if (!biz || !cust) throw new Error(`conversation ${conv.conversation_id} lost a participant`);
  return { biz, cust };
}

/** Stores a message in timestamp order (backdated customer messages slot into the past). */
export function appendMessage(ctx: EmulatorContext, conv: ConversationRec, msg: MessageRec): void {
  const list = conv.messages;
  let i = list.length;
  while (i > 0 && list[i - 1]!.timestamp > msg.timestamp) i--;
  list.splice(i, 0, msg);
  if (list.length > MAX_MESSAGES_PER_CONVERSATION) list.splice(0, list.length - MAX_MESSAGES_PER_CONVERSATION);
  conv.update_time = Math.max(conv.update_time, msg.timestamp);
  ctx.store.changed();
}

/**
 * A customer message opens or extends the window and resets the quota (seed 001: H7 resets to
 * 10). A backdated message older than the latest one changes neither.
 */
export function noteCustomerMessage(conv: ConversationRec, timestamp: number): void {
  if (conv.last_customer_at === null || timestamp >= conv.last_customer_at) {
    conv.last_customer_at = timestamp;
    conv.sent_since = 0;
  }
}

/** A business message (API send or app reply) uses one unit of quota and marks the conversation SINGLE. */
export function noteBusinessMessage(ctx: EmulatorContext, conv: ConversationRec, now: number): void {
  conv.sent_since++;
  conv.business_replied = true;
  recordDailyReply(ctx.store.data.daily, conv.business_id, conv.conversation_id, now);
  ctx.store.changed();
}

/**
 * Stores new media (an upload, a customer's image or video) for its 30 days and returns its
 * media_id; drops those past theirs: TikTok no longer serves them, and in sandbox mode each one
 * (base64, up to 4 MB) would otherwise be rewritten with the state file for good.
 */
export function storeMedia(data: StateData, media: Pick<MediaRec, 'business_id' | 'mime' | 'data_b64'>, now: number): string {
  for (const id in data.media) if (data.media[id]!.expires_at <= now) delete data.media[id];
  const id = mediaId();
  data.media[id] = { media_id: id, ...media, created_at: now, expires_at: now + MEDIA_TTL_MS };
  return id;
}
