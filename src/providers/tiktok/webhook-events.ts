import { sha256Hex } from '../../core/crypto.js';
import type { Referral } from '../../events/types.js';
import type { InboundEnvelope, ProviderEvent, ProviderMessage, ProviderUser } from '../types.js';
import type { RestMessage, RestParticipant } from './api-client.js';
import { parseTiktokJson } from './json.js';

/** TikTok's webhook body. `content` is a JSON *string* and must be parsed a second time. */
export interface TiktokEnvelope {
  client_key?: string;
  event?: string;
  create_time?: number;
  user_openid?: string;
  content?: string;
}

interface TiktokUser { id?: string; role?: string }
interface TiktokContent {
  type?: string;
  message_id?: string;
  conversation_id?: string;
  timestamp?: number;
  from?: string;
  to?: string;
  from_user?: TiktokUser;
  to_user?: TiktokUser;
  unique_identifier?: string;
  is_follower?: boolean;
  message_tag?: { source?: string };
  text?: { body?: string };
  image?: { media_id?: string };
  share_post?: { embed_url?: string; video_id?: string; item_id?: string };
  video?: { media_id?: string };
  sticker?: { url?: string };
  emoji?: { url?: string };
  template?: unknown;
  reaction?: unknown;
  referral?: { source?: string; ad?: Record<string, unknown>; short_link?: Record<string, unknown> };
  read?: { last_read_timestamp?: number };
  referenced_message_info?: { referenced_message_id?: string };
  reply_source_payload?: { reply_source_msg_id?: string; reply_source_unique_id?: string };
}

export class MalformedWebhook extends Error {}

/** Parses the outer envelope only: enough to store the event and collapse TikTok's retries. */
export function readEnvelope(raw: Buffer, text: string = raw.toString('utf8')): { envelope: TiktokEnvelope; meta: InboundEnvelope } {
  let envelope: TiktokEnvelope;
  try {
    envelope = parseTiktokJson(text) as TiktokEnvelope;
  } catch {
    throw new MalformedWebhook('the body is not valid JSON');
  }
  if (!envelope || typeof envelope !== 'object' || Array.isArray(envelope)) throw new MalformedWebhook('the body is not a JSON object');
  const eventType = typeof envelope.event === 'string' ? envelope.event : 'unknown';
  let messageId: string | undefined;
  if (typeof envelope.content === 'string' && envelope.content.includes('"message_id"')) {
    try { messageId = textOf(recordOf(parseTiktokJson(envelope.content))?.message_id); } catch { /* content checked later */ }
  }
  // Retries of one webhook repeat the body; a message id (when there is one) is stabler still.
  const dedupeKey = messageId ? `${eventType}:${messageId}` : `sha256:${sha256Hex(raw)}`;
  return { envelope, meta: { eventType, businessId: typeof envelope.user_openid === 'string' ? envelope.user_openid : null, dedupeKey, providerMessageId: messageId ?? null } };
}

const UNSUPPORTED_LABEL: Record<string, string> = {
  video: 'a video', sticker: 'a sticker', emoji: 'an emoji', reaction: 'a reaction', voice: 'a voice message', other: 'a message',
};

function mapMessage(c: TiktokContent): ProviderMessage {
  const type = (c.type ?? 'other').toLowerCase();
  const base = {
    providerMessageId: String(c.message_id ?? ''),
    timestampMs: Number(c.timestamp ?? Date.now()),
    replyToProviderId: c.referenced_message_info?.referenced_message_id ?? null,
  };
  switch (type) {
    case 'text': {
      const extra = c.reply_source_payload ? { reply_source: c.reply_source_payload } : null;
      return { ...base, type: 'text', text: c.text?.body ?? '', media: null, extra };
    }
    case 'image':
      return { ...base, type: 'image', text: null, media: c.image?.media_id ? { providerMediaId: c.image.media_id, kind: 'image' } : null, extra: null };
    case 'share_post':
      return { ...base, type: 'share_post', text: null, media: null, extra: { share_post: { embed_url: c.share_post?.embed_url ?? null, item_id: c.share_post?.video_id ?? c.share_post?.item_id ?? null } } };
    case 'template':
      return { ...base, type: 'template', text: null, media: null, extra: { template: c.template ?? null } };
    default: {
      // Never dropped: kept as `unsupported` with a readable fallback and whatever link TikTok gave.
      const link = c.sticker?.url ?? c.emoji?.url ?? null;
      const media = c.video?.media_id ? { providerMediaId: c.video.media_id, kind: 'video' as const } : null;
      return {
        ...base, type: 'unsupported',
        text: `[${UNSUPPORTED_LABEL[type] ?? 'a ' + type + ' message'} — open the conversation in TikTok to see it]`,
        media, extra: { unsupported: { original_type: type, link, payload: (c as Record<string, unknown>)[type] ?? null } },
      };
    }
  }
}

function customerOf(c: TiktokContent, businessId: string): ProviderUser {
  const inbound = c.to_user?.id === businessId;
  const id = c.unique_identifier ?? (inbound ? c.from_user?.id : c.to_user?.id) ?? '';
  return {
    externalId: String(id),
    username: (inbound ? c.from : c.to) ?? null,
    displayName: null,
    avatarUrl: null,
    isFollower: typeof c.is_follower === 'boolean' ? c.is_follower : null,
  };
}

function mapReferral(r: NonNullable<TiktokContent['referral']>): Referral {
  const source = r.source === 'short_link' ? 'short_link' : 'ad';
  const out: Referral = { source };
  if (r.ad) {
    const a = r.ad;
    out.ad = {
      advertiser_id: str(a.advertiser_id), ad_id: str(a.ad_id), ad_name: str(a.ad_name), embed_url: str(a.embed_url),
      message_material_id: str(a.message_material_id), ...(a.timestamp !== undefined ? { timestamp: Number(a.timestamp) } : {}),
    };
  }
  if (r.short_link) {
    const s = r.short_link;
    out.short_link = { ref: str(s.ref), prefilled_message: str(s.prefilled_message), prefilled_message_audit_status: str(s.prefilled_message_audit_status) };
  }
  return out;
}
const str = (v: unknown) => (v === undefined || v === null ? undefined : String(v));

/** An id or a text: a string, or a number written as one; any other value counts as absent. */
const textOf = (v: unknown): string | undefined => (typeof v === 'string' ? v : typeof v === 'number' && Number.isFinite(v) ? String(v) : undefined);
/** A time in ms since the epoch (digits in a string too), before the year 5138; otherwise absent. */
const timeOf = (v: unknown): number | undefined => {
  const n = typeof v === 'string' && /^\d{1,16}$/.test(v) ? Number(v) : v;
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 && n < 1e14 ? n : undefined;
};
const recordOf = (v: unknown): Record<string, unknown> | undefined => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);
const partOf = <T>(v: unknown, read: (r: Record<string, unknown>) => T): T | undefined => {
  const r = recordOf(v);
  return r ? read(r) : undefined;
};
const userOf = (v: unknown): TiktokUser | undefined => partOf(v, (r) => ({ id: textOf(r.id), role: textOf(r.role) }));

/**
 * `content` with every field the mapping reads of the type it expects. TikTok's payloads are
 * signed but loosely specified: a field of another type (an object where a name was expected, a
 * number for a text) would otherwise reach the database as it is, and fail the event's processing
 * on every retry, or be stored differently by SQLite and PostgreSQL. Fields the mapping does not
 * read are kept as they are (an unsupported type's payload).
 */
function wellTyped(raw: unknown): TiktokContent {
  const c = recordOf(raw) ?? {};
  return {
    ...c,
    type: textOf(c.type), message_id: textOf(c.message_id), conversation_id: textOf(c.conversation_id), timestamp: timeOf(c.timestamp),
    from: textOf(c.from), to: textOf(c.to), from_user: userOf(c.from_user), to_user: userOf(c.to_user), unique_identifier: textOf(c.unique_identifier),
    is_follower: typeof c.is_follower === 'boolean' ? c.is_follower : undefined,
    message_tag: partOf(c.message_tag, (r) => ({ source: textOf(r.source) })),
    text: partOf(c.text, (r) => ({ body: textOf(r.body) })),
    image: partOf(c.image, (r) => ({ media_id: textOf(r.media_id) })),
    share_post: partOf(c.share_post, (r) => ({ embed_url: textOf(r.embed_url), video_id: textOf(r.video_id), item_id: textOf(r.item_id) })),
    video: partOf(c.video, (r) => ({ media_id: textOf(r.media_id) })),
    sticker: partOf(c.sticker, (r) => ({ url: textOf(r.url) })),
    emoji: partOf(c.emoji, (r) => ({ url: textOf(r.url) })),
    referral: partOf(c.referral, (r) => ({ source: textOf(r.source), ad: recordOf(r.ad), short_link: recordOf(r.short_link) })),
    read: partOf(c.read, (r) => ({ last_read_timestamp: timeOf(r.last_read_timestamp) })),
    referenced_message_info: partOf(c.referenced_message_info, (r) => ({ referenced_message_id: textOf(r.referenced_message_id) })),
    reply_source_payload: partOf(c.reply_source_payload, (r) => ({ reply_source_msg_id: textOf(r.reply_source_msg_id), reply_source_unique_id: textOf(r.reply_source_unique_id) })),
  };
}

/** Decodes a stored TikTok webhook into provider events. Unknown events are kept as `ignored`. */
export function decodeTiktokWebhook(envelope: TiktokEnvelope): ProviderEvent[] {
  const businessId = textOf(envelope.user_openid) ?? null;
  const event = textOf(envelope.event) ?? 'unknown';
  if (!businessId) return [{ kind: 'ignored', businessId: null, reason: 'no user_openid' }];
  let c: TiktokContent;
  try {
    c = wellTyped(typeof envelope.content === 'string' ? parseTiktokJson(envelope.content) : envelope.content);
  } catch {
    return [{ kind: 'ignored', businessId, reason: 'content is not JSON' }];
  }
  switch (event) {
    case 'im_receive_msg':
    case 'im_send_msg': {
      if (!c.conversation_id || !c.message_id) return [{ kind: 'ignored', businessId, reason: 'message without ids' }];
      const customer = customerOf(c, businessId);
      const message = mapMessage(c);
      const fromBusiness = c.from_user?.id === businessId || (event === 'im_send_msg' && c.to_user?.id !== businessId);
      if (!fromBusiness) return [{ kind: 'customer_message', businessId, conversationId: c.conversation_id, customer, message }];
      const origin = (c.message_tag?.source ?? '').toUpperCase() === 'API' ? 'api' : 'app';
      return [{ kind: 'business_message', businessId, conversationId: c.conversation_id, customer, message, origin }];
    }
    case 'im_receive_msg_eu':
      return [{ kind: 'sync_needed', businessId, sinceMs: c.timestamp ?? (timeOf(envelope.create_time) ?? 0) * 1000 }];
    case 'im_referral_msg': {
      if (!c.conversation_id || !c.referral) return [{ kind: 'ignored', businessId, reason: 'referral without conversation' }];
      return [{ kind: 'referral', businessId, conversationId: c.conversation_id, customer: customerOf(c, businessId), referral: mapReferral(c.referral), timestampMs: Number(c.timestamp ?? Date.now()) }];
    }
    case 'im_mark_read_msg': {
      if (!c.conversation_id || !c.read?.last_read_timestamp) return [{ kind: 'ignored', businessId, reason: 'read without conversation' }];
      const customer = c.unique_identifier || c.from_user?.id ? customerOf(c, businessId) : null;
      return [{ kind: 'read', businessId, conversationId: c.conversation_id, customer, readUpToMs: Number(c.read.last_read_timestamp) }];
    }
    default:
      return [{ kind: 'ignored', businessId, reason: `event ${event} is not handled` }];
  }
}

/** Maps a REST message (content/list) to the webhook content shape, so one mapper serves both. */
export function restToContent(m: RestMessage, conversationId: string, participants: RestParticipant[]): TiktokContent {
  const byId = new Map(participants.map((p) => [p.id, p]));
  const from = m.from_user ?? participants.find((p) => p.username === m.sender || p.display_name === m.sender);
  const to = m.to_user ?? participants.find((p) => p.username === m.recipient || p.display_name === m.recipient);
  const customer = [from, to].find((p) => p && p.role?.toUpperCase() === 'PERSONAL_ACCOUNT');
  const full = customer ? byId.get(customer.id) ?? customer : undefined;
  return {
    type: String(m.message_type ?? 'other').toLowerCase(),
    message_id: m.message_id,
    conversation_id: conversationId,
    timestamp: m.timestamp,
    from: m.sender,
    to: m.recipient,
    from_user: from ? { id: from.id, role: from.role?.toLowerCase() } : undefined,
    to_user: to ? { id: to.id, role: to.role?.toLowerCase() } : undefined,
    unique_identifier: full?.id,
    is_follower: full?.is_follower,
    message_tag: m.message_tag,
    text: m.text, image: m.image, share_post: m.share_post, video: m.video, sticker: m.sticker, emoji: m.emoji, template: m.template,
    referenced_message_info: m.referenced_message_info,
  };
}

/** Display name and avatar of the customer, which only the REST participant list carries. */
export function participantProfile(participants: RestParticipant[], externalId: string): { displayName: string | null; avatarUrl: string | null } {
  const p = participants.find((x) => x.id === externalId);
  return { displayName: p?.display_name ?? null, avatarUrl: p?.profile_image ?? null };
}

export function decodeRestMessage(m: RestMessage, conversationId: string, participants: RestParticipant[], businessId: string): ProviderEvent {
  const content = restToContent(m, conversationId, participants);
  const events = decodeTiktokWebhook({ event: content.from_user?.id === businessId ? 'im_send_msg' : 'im_receive_msg', user_openid: businessId, content: JSON.stringify(content) });
  const ev = events[0];
  if (ev.kind === 'customer_message' || ev.kind === 'business_message') {
    const profile = participantProfile(participants, ev.customer.externalId);
    ev.customer.displayName = profile.displayName;
    ev.customer.avatarUrl = profile.avatarUrl;
  }
  return ev;
}
