/**
 * The shapes TikTok puts on the wire, built from stored records: webhook `content` objects
 * (lower-case enums, tiktok-api.md §3.6) and REST message/participant objects (upper-case enums,
 * §2.4). Kept apart from the routes so both surfaces stay consistent with each other.
 */
import type { AdReferral, BusinessRec, ConversationRec, CustomerRec, MessageRec, ShortLinkReferral } from './state.js';

type Json = Record<string, unknown>;

/** Where the emulator is reachable from the caller's side (base includes the mount prefix), and now. */
export interface UrlBase { base: string; now: number }

/**
 * The fields every customer-conversation webhook carries: from/to, from_user/to_user,
 * unique_identifier (always the personal account, whichever way the message goes), the
 * conversation, the time, is_follower and scene_type. Built field by field: the emulator writes
 * one per send (its echo), and spreading partial objects cost a share of its CPU.
 */
function conversationContent(biz: BusinessRec, cust: CustomerRec, conversationId: string, timestamp: number, inbound: boolean): Json {
  const b = { id: biz.open_id, role: 'business_account' };
  const c = { id: cust.unique_identifier, role: 'personal_account' };
  return {
    from: inbound ? cust.username : biz.username,
    to: inbound ? biz.username : cust.username,
    from_user: inbound ? c : b,
    to_user: inbound ? b : c,
    unique_identifier: cust.unique_identifier,
    conversation_id: conversationId,
    timestamp,
    is_follower: cust.is_follower,
    scene_type: 0,
  };
}

/** The type-specific block of a webhook message (keyed by the lower-case type). */
function webhookBlock(msg: MessageRec): unknown {
  switch (msg.type) {
    case 'text': return msg.text;
    case 'image': return msg.image;
    // Webhooks call the post id video_id; REST calls it item_id.
    case 'share_post': return { embed_url: msg.share_post?.embed_url, video_id: msg.share_post?.item_id };
    case 'video': return msg.video;
    case 'sticker': return msg.sticker;
    case 'emoji': return msg.emoji;
    case 'template': {
      // The webhook nests elements[] and calls a button label `text`, unlike the flat send body.
      const t = msg.template!;
      return {
        type: t.type.toLowerCase(),
        elements: [{ title: t.title, buttons: t.buttons.map((b) => ({ text: b.title, type: b.type, id: b.id })) }],
      };
    }
  }
}

/** `content` of im_receive_msg (customer → business) and im_send_msg (business → customer). */
export function messageContent(biz: BusinessRec, cust: CustomerRec, msg: MessageRec): Json {
  const content = conversationContent(biz, cust, msg.conversation_id, msg.timestamp, msg.direction === 'inbound');
  content['message_id'] = msg.message_id;
  content['type'] = msg.type;
  content['message_tag'] = { source: msg.source };
  content[msg.type] = webhookBlock(msg);
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
  const content = conversationContent(biz, cust, conv.conversation_id, timestamp, true);
  content['referral'] = referral;
  return content;
}

/** `content` of im_mark_read_msg: sent by the customer's side; a high-water mark in ms. */
export function readContent(biz: BusinessRec, cust: CustomerRec, conv: ConversationRec, lastRead: number, now: number): Json {
  const content = conversationContent(biz, cust, conv.conversation_id, now, true);
  content['read'] = { last_read_timestamp: lastRead };
  return content;
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
