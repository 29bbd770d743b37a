import type { AppContext } from '../context.js';
import { ApiError, notFound } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { type Executor, type Tx } from '../db/database.js';
import { boundRow, prepared } from '../db/prepared.js';
import { TiktokApiError } from '../providers/tiktok/errors.js';
import { checkImage, checkTemplate, checkText, decodeBase64, templateAsText, tooLarge, IMAGE_MAX_BYTES, type Template, type TemplateInput } from './content.js';
import { fetchImage } from './image-fetch.js';
import { conversationsRepliedToday, isUniqueViolation, lockConversation, repliedBeforeLastInbound, repliedToday, requestHash, utcDayStart, DAY_MS } from './queue.js';
import { imageCapability } from './image-capability.js';
import { acceptBatcherFor, conversationsForAccept, type ConversationForAccept, type ConversationWithCap } from './accept-batch.js';
import { committerFor, type Op } from './committer.js';
import { iso, MESSAGE_COLUMNS, type ConversationRow, type MessageRow } from './views.js';
import { WINDOW_POLICIES, windowAt, type WindowState } from './window.js';

/**
 * Accepting a reply: every rule TikTok would apply is checked here, before anything is queued, so
 * the caller learns at once (each rule its own error code and details) and TikTok never sees a
 * message it would refuse. What passes is stored as `queued` and the sender is woken.
 */
export interface ReplyRequest {
  conversation_id: string;
  type: 'text' | 'image' | 'share_post' | 'template';
  text?: string;
  image?: { url?: string; data_base64?: string; media_id?: string };
  share_post?: { item_id: string };
  template?: TemplateInput;
  reply_to?: string;
}

export type ReplySource = 'api' | 'inbox' | 'auto_reply';

export interface AcceptOptions {
  source: ReplySource;
  /** Who sent it: the API key or user id. */
  sentBy: string | null;
  idempotencyKey?: string;
}

export interface Accepted { message: MessageRow; replayed: boolean }

const IDEMPOTENCY_KEY_MAX = 255;

const invalid = (message: string, details: Record<string, unknown> = {}) => new ApiError('invalid_request', message, details);

export async function acceptReply(ctx: AppContext, req: ReplyRequest, opts: AcceptOptions): Promise<Accepted> {
  const hash = requestHash(req);
  let key: string | null = null;
  if (opts.idempotencyKey !== undefined) {
    if (opts.idempotencyKey === '' || opts.idempotencyKey.length > IDEMPOTENCY_KEY_MAX) throw invalid(`Idempotency-Key must be 1 to ${IDEMPOTENCY_KEY_MAX} characters`, { field: 'Idempotency-Key' });
    // Keys are scoped to the caller: another API key using the same string is another request.
    key = `${opts.sentBy ?? 'anonymous'}:${opts.idempotencyKey}`;
    const replay = await findReplay(ctx, key, hash);
    if (replay) return { message: replay, replayed: true };
  }

  const shape = checkShape(req);
  const now = ctx.clock();
  const day = Math.floor(utcDayStart(now) / DAY_MS);
  // Whether this is the conversation's first reply today, unless this process knows it is not.
  let newToday = repliedDays(ctx).get(req.conversation_id) !== day;
  const conv: ConversationWithCap | undefined = ctx.database.dialect === 'postgres'
    ? await acceptBatcherFor(ctx).conversation(req.conversation_id, newToday ? now : null)
    : await conversationForAccept.first(ctx.database.db, { id: req.conversation_id }).then((c) => c && { ...c, cap: null });
  if (!conv) throw notFound('conversation', req.conversation_id);
  checkAccount(conv);

  // Content first (cheap and independent of time), then the window, the daily cap, then images
  // (which may need a download and a capabilities lookup).
  if (shape.text !== null) checkText(shape.text, req.type === 'template' ? 'template (as text)' : 'text');
  const replyTo = req.reply_to ? await checkReplyTo(ctx, conv.id, req.reply_to) : null;
  const policy = WINDOW_POLICIES[ctx.config.tiktokWindowPolicy];
  const repliedBefore = policy.unlimitedAfterReply ? (await repliedBeforeLastInbound(ctx.database.db, [conv])).has(conv.id) : false;
  throwIfBlocked(windowAt(policy, { lastInboundAt: conv.last_inbound_at, outboundSinceInbound: conv.outbound_since_inbound, repliedBefore }, now), conv, policy.windowMs);
  if (newToday && conv.cap) {
    newToday = !conv.cap.repliedToday;
    if (newToday) throwIfCapped(ctx, conv.cap.used, conv.account_id, now);
  } else if (newToday && req.type === 'image') {
    // Only an image is worth refusing here (before its download); for any other reply this is what
    // the write checks again under the write lock: asking twice cost the accept two reads.
    newToday = !repliedToday(conv, now);
    if (newToday) await checkDailyCap(ctx, ctx.database.db, conv.account_id, now);
  }
  const image = req.type === 'image' ? await resolveImage(ctx, req.image!, conv.account_id) : null;
  if (image) await checkImageCapability(ctx, conv, conv.business_id);

  const extra: Record<string, unknown> = {};
  if (shape.template) extra.template = shape.template;
  if (req.share_post) extra.share_post = { item_id: req.share_post.item_id };
  if (replyTo) extra.reply_to_provider_id = replyTo.provider_message_id;
  const mediaId = image ? newId('med', now) : null;
  const row: MessageRow = {
    // The id is taken under the conversation's lock (below): id order is then the order replies
    // took their quota, which is the order the sender keeps per conversation.
    id: '', conversation_id: conv.id, account_id: conv.account_id, direction: 'outbound', provider_message_id: null,
    type: req.type, text: shape.text, extra: Object.keys(extra).length ? JSON.stringify(extra) : null,
    media: image ? JSON.stringify({ id: mediaId, kind: 'image', url: `/v1/media/${mediaId}`, content_type: image.contentType, size: image.bytes?.length ?? null }) : null,
    source: opts.source, status: 'queued', error: null, idempotency_key: key, request_hash: key ? hash : null,
    reply_to: replyTo?.id ?? null, sent_by: opts.sentBy, attempts: 0, next_attempt_at: now, counted_in_window: 1,
    provider_timestamp: null, created_at: now, updated_at: now,
  };

  // Every check in here comes before the first write: a refusal leaves the transaction clean.
  const write: Op<void> = async (tx) => {
    // On Postgres a possible first reply of the day locks its account (the daily cap) before its
    // conversation: the order the batched first replies lock in.
    if (newToday && ctx.database.dialect === 'postgres') {
      await tx.selectFrom('accounts').select('id').where('id', '=', conv.account_id).forUpdate().execute();
    }
    // The quota is taken atomically with the insert: concurrent requests see each other.
    const fresh = await lockConversation(tx, conv.id);
    throwIfBlocked(windowAt(policy, { lastInboundAt: fresh.last_inbound_at, outboundSinceInbound: fresh.outbound_since_inbound, repliedBefore }, now), fresh, policy.windowMs);
    if (newToday && !repliedToday(fresh, now)) await checkDailyCap(ctx, tx, conv.account_id, now);
    await takeQuota.execute(tx, { id: conv.id, count: fresh.outbound_since_inbound + 1, now });
    row.id = newId('msg', now);
    await insertReply.execute(tx, row);
    if (image && mediaId) {
      await tx.insertInto('media').values({
        id: mediaId, message_id: row.id, account_id: conv.account_id, provider_media_id: image.providerMediaId,
        content_type: image.contentType, size: image.bytes?.length ?? null, data: image.bytes, created_at: now,
      }).execute();
    }
  };
  try {
    // SQLite: group-committed with other accepts and the sender's writes (one disk sync for many).
    // Postgres: the replies accepted together are written together (AcceptBatcher); images (their
    // media row) take the locking transaction, and so does a reply the batch could not settle.
    let path: 'group_commit' | 'batched' | 'locking' = 'batched';
    if (ctx.database.dialect === 'sqlite') {
      path = 'group_commit';
      await committerFor(ctx).run(write);
    } else if (image || !(await acceptBatcherFor(ctx).write({ seen: conv, row, policy, repliedBefore, newToday, now }))) {
      path = 'locking';
      await ctx.database.db.transaction().execute((tx) => write(tx, []));
    }
    ctx.metrics.acceptWrites.inc({ path });
  } catch (err) {
    if (key && isUniqueViolation(err)) {
      const replay = await findReplay(ctx, key, hash);
      if (replay) return { message: replay, replayed: true };
    }
    throw err;
  }
  rememberReplied(ctx, conv.id, day);
  ctx.bus.notify('outbound', conv.account_id);
  return { message: row, replayed: false };
}

/** Conversations this process accepted a reply for, by UTC day: spares the "replied today?" read. */
const replied = new WeakMap<AppContext, Map<string, number>>();
function repliedDays(ctx: AppContext): Map<string, number> {
  let m = replied.get(ctx);
  if (!m) replied.set(ctx, m = new Map());
  return m;
}
function rememberReplied(ctx: AppContext, conversationId: string, day: number): void {
  const m = repliedDays(ctx);
  if (m.size > 100_000) m.clear();
  m.set(conversationId, day);
}

/** The reply accepted under this Idempotency-Key, through its (partial, unique) index. */
export const byIdempotencyKey = (db: Executor, key: string) => db.selectFrom('messages').selectAll().where('idempotency_key', '=', key);

async function findReplay(ctx: AppContext, key: string, hash: string): Promise<MessageRow | null> {
  const existing = await byIdempotencyKey(ctx.database.db, key).executeTakeFirst();
  if (!existing) return null;
  if (existing.request_hash !== hash) {
    throw new ApiError('conflict', 'this Idempotency-Key was already used with a different request body', { message_id: existing.id });
  }
  return existing;
}

interface Shape { text: string | null; template: Template | null }

/** Which fields go with which type; text and image never together (TikTok refuses it). */
function checkShape(req: ReplyRequest): Shape {
  if (req.text !== undefined && req.image !== undefined) {
    throw invalid('a message cannot carry both text and an image: send them as two messages', { rule: 'text_with_image' });
  }
  const fields = { text: req.text, image: req.image, share_post: req.share_post, template: req.template } as const;
  for (const [name, value] of Object.entries(fields)) {
    if (name !== req.type && value !== undefined) throw invalid(`${name} does not go with type "${req.type}"`, { field: name });
  }
  if (fields[req.type] === undefined) throw invalid(`type "${req.type}" needs the ${req.type} field`, { field: req.type });
  if (req.reply_to !== undefined && req.type !== 'text' && !(req.type === 'template' && req.template?.as_text)) {
    throw invalid('reply_to (a quoted reply) is possible only for text messages', { field: 'reply_to' });
  }
  if (req.type === 'image') {
    const given = (['url', 'data_base64', 'media_id'] as const).filter((k) => req.image![k] !== undefined);
    if (given.length !== 1) throw invalid('image needs exactly one of url, data_base64, media_id', { field: 'image' });
  }
  if (req.type === 'text') return { text: req.text!, template: null };
  if (req.type === 'template') {
    const template = checkTemplate(req.template!);
    return { text: template.as_text ? templateAsText(template) : null, template };
  }
  return { text: null, template: null };
}

function checkAccount(conv: ConversationForAccept): void {
  const details = { account_id: conv.account_id };
  switch (conv.account_status) {
    case 'active': return;
    case 'needs_reauth':
      throw new ApiError('account_needs_reauth', conv.status_reason ?? 'the TikTok account must be reconnected before it can send', { ...details, reconnect_url: '/connect/tiktok' });
    case 'restricted':
      throw new ApiError('account_restricted', conv.status_reason ?? 'this TikTok account cannot use the messaging API', details);
    default:
      throw new ApiError('account_disconnected', 'the TikTok account is disconnected; connect it again', details);
  }
}

function throwIfBlocked(w: WindowState, conv: Pick<ConversationRow, 'id' | 'last_inbound_at'>, windowMs: number): void {
  if (!w.blocked) return;
  if (w.blocked === 'never_opened') {
    throw new ApiError('conversation_not_open', 'the customer has not written in this conversation; on TikTok only the customer can start one', { conversation_id: conv.id });
  }
  if (w.blocked === 'window_closed') {
    throw new ApiError('window_closed', `the ${windowMs / 3600000}-hour reply window closed at ${iso(w.expires_at)}; it reopens when the customer writes again`, {
      conversation_id: conv.id, closed_at: iso(w.expires_at), last_customer_message_at: iso(conv.last_inbound_at), window_hours: windowMs / 3600000,
    });
  }
  throw new ApiError('quota_exhausted', `all ${w.quota_limit} replies allowed since the customer's last message are used (queued ones included); the next customer message resets the quota`, {
    conversation_id: conv.id, limit: w.quota_limit, remaining: 0, resets_on: 'next_customer_message', window_expires_at: iso(w.expires_at),
  });
}

// The statements of every accept, compiled once (see db/prepared.ts).
const conversationForAccept = prepared<{ id: string }>()((db, $) => conversationsForAccept(db).where('conversations.id', '=', $('id')));

const takeQuota = prepared<{ id: string; count: number; now: number }>()((db, $) =>
  db.updateTable('conversations').set({ outbound_since_inbound: $('count'), updated_at: $('now') }).where('id', '=', $('id')));

const insertReply = prepared<MessageRow>()((db, $) => db.insertInto('messages').values(boundRow($, MESSAGE_COLUMNS)));

async function checkDailyCap(ctx: AppContext, db: AppContext['database']['db'] | Tx, accountId: string, now: number): Promise<void> {
  throwIfCapped(ctx, await conversationsRepliedToday(db, accountId, now), accountId, now);
}

/** `used`: conversations the account replied to today, before this reply's. */
function throwIfCapped(ctx: AppContext, used: number, accountId: string, now: number): void {
  const cap = ctx.config.tiktokDailyCap;
  if (used >= cap) {
    throw new ApiError('daily_cap_reached', `this account already replied to ${used} conversations today (UTC); TikTok allows ${cap} a day`, {
      account_id: accountId, limit: cap, used, resets_at: iso(utcDayStart(now) + DAY_MS),
    });
  }
}

async function checkReplyTo(ctx: AppContext, conversationId: string, id: string): Promise<MessageRow> {
  const m = await ctx.database.db.selectFrom('messages').selectAll().where('id', '=', id).executeTakeFirst();
  if (!m || m.conversation_id !== conversationId) throw invalid(`reply_to: message ${id} is not in this conversation`, { field: 'reply_to' });
  if (!['text', 'image', 'share_post'].includes(m.type)) throw invalid('reply_to: TikTok can quote only text, image and share_post messages', { field: 'reply_to', type: m.type });
  if (!m.provider_message_id) throw invalid('reply_to: that message has not reached TikTok yet', { field: 'reply_to', status: m.status });
  return m;
}

interface ResolvedImage { bytes: Buffer | null; contentType: string | null; providerMediaId: string | null }

async function resolveImage(ctx: AppContext, image: NonNullable<ReplyRequest['image']>, accountId: string): Promise<ResolvedImage> {
  if (image.data_base64 !== undefined) {
    // Cheap size check before decoding: 4 base64 characters carry 3 bytes.
    if (image.data_base64.length > Math.ceil(IMAGE_MAX_BYTES / 3) * 4 + 128) throw tooLarge(Math.floor(image.data_base64.length * 3 / 4));
    const bytes = decodeBase64(image.data_base64);
    if (!bytes) throw invalid('image.data_base64 is not valid base64', { field: 'image.data_base64' });
    return { bytes, contentType: checkImage(bytes), providerMediaId: null };
  }
  if (image.url !== undefined) {
    const bytes = await fetchImage(image.url, { allowPrivate: ctx.config.allowPrivateWebhooks });
    return { bytes, contentType: checkImage(bytes), providerMediaId: null };
  }
  const mediaId = image.media_id!;
  if (mediaId.startsWith('med_')) {
    const media = await ctx.database.db.selectFrom('media').selectAll().where('id', '=', mediaId).executeTakeFirst();
    if (!media || (media.account_id !== null && media.account_id !== accountId)) throw notFound('media', mediaId);
    if (!media.data) throw invalid('this media has no stored bytes yet: fetch it once with GET /v1/media/{id}, or send it by url', { field: 'image.media_id' });
    const bytes = Buffer.from(media.data);
    return { bytes, contentType: checkImage(bytes), providerMediaId: null };
  }
  // A TikTok media_id the caller uploaded itself: sent as is (TikTok checked type and size on upload).
  if (!/^[\w.:=+/-]{1,256}$/.test(mediaId)) throw invalid('image.media_id is not a valid media id', { field: 'image.media_id' });
  return { bytes: null, contentType: null, providerMediaId: mediaId };
}

/** Refuses an image where TikTok does not allow one (see image-capability.ts). */
async function checkImageCapability(ctx: AppContext, conv: ConversationRow, businessId: string): Promise<void> {
  let allowed: boolean;
  try {
    allowed = await imageCapability(ctx, conv, businessId);
  } catch (err) {
    if (err instanceof ApiError) throw err;
    throw new ApiError('provider_error', 'TikTok did not answer whether this conversation can receive images; try again', {
      provider_code: err instanceof TiktokApiError ? err.code : null, reason: err instanceof Error ? err.message : String(err),
    });
  }
  if (!allowed) {
    throw new ApiError('image_not_allowed', 'TikTok does not allow images in this conversation (the business or the customer is in a region without DM images); send text', {
      conversation_id: conv.id, capability: 'IMAGE_SEND',
    });
  }
}

