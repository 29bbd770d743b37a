/**
 * The shapes TikTok puts on the wire, built from stored records: webhook `content` objects
 * (lower-case enums, tiktok-api.md §3.6) and REST message/participant objects (upper-case enums,
 * §2.4). Kept apart from the routes so both surfaces stay consistent with each other.
 */
import type { AdReferral, BusinessRec, ConversationRec, CustomerRec, MessageRec, ShortLinkReferral } from './state.js';

type Json = Record<string, unknown>;

/** Where the emulator is reachable from the caller's side (base includes the mount prefix), and now. */
export interface UrlBase { base: string; now: number }

function parties(biz: BusinessRec, cust: CustomerRec, inbound: boolean): Json {
  const b = { id: biz.open_id, role: 'business_account' };
  const c = { id: cust.unique_identifier, role: 'personal_account' };
  return inbound
    ? { from: cust.username, to: biz.username, from_user: c, to_user: b }
    : { from: biz.username, to: cust.username, from_user: b, to_user: c };
}

/** The type-specific block of a webhook message, keyed by the lower-case type. */
function webhookBlock(msg: MessageRec): Json {
  switch (msg.type) {
    case 'text': return { text: msg.text };
    case 'image': return { image: msg.image };
    // Webhooks call the post id video_id; REST calls it item_id.
    case 'share_post': return { share_post: { embed_url: msg.share_post?.embed_url, video_id: msg.share_post?.item_id } };
    case 'video': return { video: msg.video };
    case 'sticker': return { sticker: msg.sticker };
    case 'emoji': return { emoji: msg.emoji };
    case 'template': {
      // The webhook nests elements[] and calls a button label `text`, unlike the flat send body.
      const t = msg.template!;
      return {
        template: {
          type: t.type.toLowerCase(),
          elements: [{ title: t.title, buttons: t.buttons.map((b) => ({ text: b.title, type: b.type, id: b.id })) }],
        },
      };
    }
  }
}

/** `content` of im_receive_msg (customer → business) and im_send_msg (business → customer). */
export function messageContent(biz: BusinessRec, cust: CustomerRec, msg: MessageRec): Json {
  const content: Json = {
    ...parties(biz, cust, msg.direction === 'inbound'),
    // unique_identifier always names the personal account, whichever way the message goes.
    unique_identifier: cust.unique_identifier,
    conversation_id: msg.conversation_id,
    message_id: msg.message_id,
    timestamp: msg.timestamp,
    type: msg.type,
    is_follower: cust.is_follower,
    scene_type: 0,
    message_tag: { source: msg.source },
    ...webhookBlock(msg),
  };
  if (msg.referenced_message_info) content['referenced_message_info'] = msg.referenced_message_info;
  return content;
}

/** `content` of im_receive_msg_eu: TikTok strips everything but the recipient and the time. */
export function euStrippedContent(biz: BusinessRec, msg: MessageRec): Json {
  return { to: biz.username, to_user: { id: biz.open_id, role: 'business_account' }, timestamp: msg.timestamp };
}

export type ReferralInput = { source: 'ad'; ad: AdReferral } | { source: 'short_link'; short_link: ShortLinkReferral };

/** `content` of im_referral_msg: the common fields without message_id/type, plus `referral`. */
export function referralContent(biz: BusinessRec, cust: CustomerRec, conv: ConversationRec, referral: ReferralInput, timestamp: number): Json {
  return {
    ...parties(biz, cust, true),
    unique_identifier: cust.unique_identifier,
    conversation_id: conv.conversation_id,
    timestamp,
    is_follower: cust.is_follower,
    scene_type: 0,
    referral,
  };
}

/** `content` of im_mark_read_msg: sent by the customer's side; a high-water mark in ms. */
export function readContent(biz: BusinessRec, cust: CustomerRec, conv: ConversationRec, lastRead: number, now: number): Json {
  return {
    ...parties(biz, cust, true),
    unique_identifier: cust.unique_identifier,
    conversation_id: conv.conversation_id,
    timestamp: now,
    is_follower: cust.is_follower,
    scene_type: 0,
    read: { last_read_timestamp: lastRead },
  };
}

/** REST Participant. is_follower exists only on personal accounts (tiktok-api.md §2.4). */
export function businessParticipant(biz: BusinessRec, urls: UrlBase): Json {
  return { role: 'BUSINESS_ACCOUNT', id: biz.open_id, display_name: biz.display_name, profile_image: avatarUrl(urls, biz.open_id) };
}

export function customerParticipant(cust: CustomerRec, urls: UrlBase): Json {
  return {
    role: 'PERSONAL_ACCOUNT', id: cust.unique_identifier, display_name: cust.display_name,
    profile_image: avatarUrl(urls, cust.unique_identifier), is_follower: cust.is_follower,
  };
}

/** The REST message shape of content/list. */
export function restMessage(biz: BusinessRec, cust: CustomerRec, msg: MessageRec, urls: UrlBase): Json {
  const inbound = msg.direction === 'inbound';
  const bp = businessParticipant(biz, urls);
  const cp = customerParticipant(cust, urls);
  const out: Json = {
    message_id: msg.message_id,
    conversation_id: msg.conversation_id,
    sender: inbound ? cust.username : biz.username,
    recipient: inbound ? biz.username : cust.username,
    timestamp: msg.timestamp,
    message_type: msg.type.toUpperCase(),
    message_tag: { source: msg.source },
    from_user: inbound ? cp : bp,
    to_user: inbound ? bp : cp,
  };
  if (msg.type === 'template') out['template'] = msg.template;
  else if (msg.type === 'share_post') out['share_post'] = msg.share_post;
  else out[msg.type] = msg[msg.type];
  if (msg.referenced_message_info) out['referenced_message_info'] = msg.referenced_message_info;
  return out;
}

/**
 * Profile images are served by the emulator itself (a generated PNG) so that a gateway which
 * downloads avatars gets real bytes. Like TikTok's CDN URLs they carry x-expires (30 days).
 */
export function avatarUrl(urls: UrlBase, id: string): string {
  return `${urls.base}/_static/${encodeURIComponent(id)}.png?x-expires=${Math.floor(urls.now / 1000) + 30 * 86_400}`;
}
