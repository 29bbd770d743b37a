/**
 * TikTok's messaging rules as the emulator enforces them on business/message/send/ (and on
 * app replies): the 48 h window and its quota of 10, the daily conversation cap, QPS, and the
 * content rules. Each refusal names the rule so /_control/stats can count violations by rule.
 *
 * Error codes: TikTok documents 40064 only for the daily cap ("You are sending messages too fast.
 * Take a rest."); using 40064 for window and quota too, 40001 for region/permission problems and
 * 40002 for invalid content is an emulator assumption (tiktok-api.md §5).
 */
import { performance } from 'node:perf_hooks';
import { TikTokError } from './envelope.js';
import { blocksImages } from './regions.js';
import type { BusinessRec, ConversationRec, CustomerRec, MediaRec, MessageRec, TemplateBody } from './state.js';

export type Rule = 'qps' | 'window' | 'quota' | 'daily_cap' | 'content';

export class RuleViolation extends TikTokError {
  constructor(readonly rule: Rule, code: number, message: string) {
    super(code, message);
  }
}

export interface WindowPolicy { windowHours: number; quota: number }

export interface WindowState {
  open: boolean;
  reason: 'no_customer_message' | 'expired' | 'quota_used' | null;
  expires_at: number | null;
  quota_remaining: number;
}

/** The window ends windowHours after the LATEST customer message (seed 001: H8 + 48 = H56). */
export function windowState(conv: ConversationRec, now: number, policy: WindowPolicy): WindowState {
  if (conv.last_customer_at === null) return { open: false, reason: 'no_customer_message', expires_at: null, quota_remaining: 0 };
  const expiresAt = conv.last_customer_at + policy.windowHours * 3_600_000;
  const remaining = Math.max(0, policy.quota - conv.sent_since);
  if (now >= expiresAt) return { open: false, reason: 'expired', expires_at: expiresAt, quota_remaining: remaining };
  if (remaining === 0) return { open: false, reason: 'quota_used', expires_at: expiresAt, quota_remaining: 0 };
  return { open: true, reason: null, expires_at: expiresAt, quota_remaining: remaining };
}

/** Throws the window or quota violation, if any. `quota: false` skips the quota (sender actions). */
export function checkWindow(conv: ConversationRec, now: number, policy: WindowPolicy, opts: { quota: boolean } = { quota: true }): void {
  const w = windowState(conv, now, policy);
  if (w.reason === 'no_customer_message') {
    throw new RuleViolation('window', 40064, 'The user has not messaged this business; a business cannot start a conversation.');
  }
  if (w.reason === 'expired') {
    throw new RuleViolation('window', 40064, `The ${policy.windowHours}-hour messaging window of this conversation has expired. Wait for the user to send a message.`);
  }
  if (w.reason === 'quota_used' && opts.quota) {
    throw new RuleViolation('quota', 40064, `The business has sent ${policy.quota} messages since the user's last message. Wait for the user to reply.`);
  }
}

export function utcDay(now: number): number {
  return Math.floor(now / 86_400_000);
}

export type DailyLog = Record<string, { day: number; conversations: string[] }>;

/** The cap counts DISTINCT conversations replied to per UTC day; more messages to one already counted are fine. */
export function checkDailyCap(daily: DailyLog, businessId: string, convId: string, now: number, cap: number): void {
  const entry = daily[businessId];
  if (!entry || entry.day !== utcDay(now)) return;
  if (entry.conversations.includes(convId)) return;
  if (entry.conversations.length >= cap) {
    throw new RuleViolation('daily_cap', 40064, 'You are sending messages too fast. Take a rest.');
  }
}

export function recordDailyReply(daily: DailyLog, businessId: string, convId: string, now: number): void {
  const day = utcDay(now);
  let entry = daily[businessId];
  if (!entry || entry.day !== day) daily[businessId] = entry = { day, conversations: [] };
  if (!entry.conversations.includes(convId)) entry.conversations.push(convId);
}

/**
 * Sliding one-second window per business over business/message/* calls. It runs on the real
 * monotonic clock, not the injected `clock`: QPS is about how fast requests really arrive, and a
 * test that freezes or jumps the emulated calendar must not trip (or dodge) the rate limit.
 * Refused calls do not occupy the window.
 */
export class QpsLimiter {
  private readonly hits = new Map<string, number[]>();
  constructor(private readonly now: () => number = () => performance.now()) {}

  tryAcquire(key: string, limit: number): boolean {
    const now = this.now();
    let list = this.hits.get(key);
    if (!list) this.hits.set(key, list = []);
    while (list.length > 0 && list[0]! <= now - 1000) list.shift();
    if (list.length >= limit) return false;
    list.push(now);
    return true;
  }

  reset(): void { this.hits.clear(); }
}

export const QPS_MESSAGE = 'Requests made too frequently. Please try again later.';

// ---------------------------------------------------------------------------------------------
// Content rules
// ---------------------------------------------------------------------------------------------

export type OutboundType = 'TEXT' | 'IMAGE' | 'SHARE_POST' | 'TEMPLATE' | 'SENDER_ACTION';

export interface OutboundMessage {
  message_type: OutboundType;
  text?: { body: string };
  image?: { media_id: string };
  share_post?: { item_id: string };
  template?: TemplateBody;
  sender_action?: 'TYPING' | 'MARK_READ';
  referenced_message_info?: { referenced_message_id: string };
}

export interface ContentDeps {
  biz: BusinessRec;
  cust: CustomerRec;
  conv: ConversationRec;
  now: number;
  findMedia(mediaId: string): MediaRec | undefined;
  findMessage(messageId: string): MessageRec | undefined;
}

export const MAX_TEXT_CODE_POINTS = 6000;

function contentError(message: string, code = 40002): RuleViolation {
  return new RuleViolation('content', code, message);
}

function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** Validates the message part of a send/ body (tiktok-api.md §2.3 and §4) and returns it normalised. */
export function validateOutbound(body: Record<string, unknown>, deps: ContentDeps): OutboundMessage {
  const type = body['message_type'];
  const text = obj(body['text']);
  const image = obj(body['image']);
  if (text && image) throw contentError('A message cannot contain both text and an image.');
  const refInfo = obj(body['referenced_message_info']);

  let out: OutboundMessage;
  switch (type) {
    case 'TEXT': {
      const b = text?.['body'];
      if (typeof b !== 'string' || b.length === 0) throw contentError('Param text.body is required.');
      if (codePoints(b) > MAX_TEXT_CODE_POINTS) throw contentError(`Param text.body exceeds ${MAX_TEXT_CODE_POINTS} characters.`);
      out = { message_type: 'TEXT', text: { body: b } };
      break;
    }
    case 'IMAGE': {
      const id = image?.['media_id'];
      if (typeof id !== 'string' || id === '') throw contentError('Param image.media_id is required.');
      const media = deps.findMedia(id);
      if (!media || media.business_id !== deps.biz.open_id || media.expires_at <= deps.now) {
        throw contentError('Param image.media_id is invalid.');
      }
      if (blocksImages(deps.biz.region) || blocksImages(deps.cust.region)) {
        throw contentError('Sending images is not available in the region of this business or user.', 40001);
      }
      out = { message_type: 'IMAGE', image: { media_id: id } };
      break;
    }
    case 'SHARE_POST': {
      const item = obj(body['share_post'])?.['item_id'];
      if (typeof item !== 'string' || item === '') throw contentError('Param share_post.item_id is required.');
      out = { message_type: 'SHARE_POST', share_post: { item_id: item } };
      break;
    }
    case 'TEMPLATE':
      out = { message_type: 'TEMPLATE', template: validateTemplate(obj(body['template'])) };
      break;
    case 'SENDER_ACTION': {
      const action = body['sender_action'];
      if (action !== 'TYPING' && action !== 'MARK_READ') throw contentError('Param sender_action must be TYPING or MARK_READ.');
      out = { message_type: 'SENDER_ACTION', sender_action: action };
      break;
    }
    default:
      throw contentError('Param message_type is invalid.');
  }

  if (refInfo) {
    // A quoted reply must be TEXT and quote a TEXT, IMAGE or SHARE_POST message of this conversation.
    const refId = refInfo['referenced_message_id'];
    if (out.message_type !== 'TEXT') throw contentError('referenced_message_info requires message_type TEXT.');
    if (typeof refId !== 'string' || refId === '') throw contentError('Param referenced_message_info.referenced_message_id is required.');
    const ref = deps.findMessage(refId);
    if (!ref || ref.conversation_id !== deps.conv.conversation_id || !['text', 'image', 'share_post'].includes(ref.type)) {
      throw contentError('Param referenced_message_info.referenced_message_id is invalid.');
    }
    out.referenced_message_info = { referenced_message_id: refId };
  }
  return out;
}

function validateTemplate(t: Record<string, unknown> | undefined): TemplateBody {
  if (!t) throw contentError('Param template is required.');
  const type = t['type'];
  if (type !== 'QA_BUTTON_CARD' && type !== 'QA_LINK_CARD') throw contentError('Param template.type must be QA_BUTTON_CARD or QA_LINK_CARD.');
  const title = t['title'];
  if (typeof title !== 'string' || title === '' || codePoints(title) > 40) throw contentError('Param template.title must be 1 to 40 characters.');
  const buttons = t['buttons'];
  if (!Array.isArray(buttons) || buttons.length < 1 || buttons.length > 3) throw contentError('Param template.buttons must hold 1 to 3 buttons.');
  // Button titles: 20 characters on a button card, 40 on a link card (tiktok-api.md §2.3).
  const maxTitle = type === 'QA_LINK_CARD' ? 40 : 20;
  const out: TemplateBody = { type, title, buttons: [] };
  buttons.forEach((raw, i) => {
    const b = obj(raw);
    const bTitle = b?.['title'];
    const id = b?.['id'];
    const bType = b?.['type'] ?? 'REPLY';
    if (typeof bTitle !== 'string' || bTitle === '' || codePoints(bTitle) > maxTitle) throw contentError(`Param template.buttons[${i}].title must be 1 to ${maxTitle} characters.`);
    if (typeof id !== 'string' || id === '' || codePoints(id) > 40) throw contentError(`Param template.buttons[${i}].id must be 1 to 40 characters.`);
    if (typeof bType !== 'string') throw contentError(`Param template.buttons[${i}].type is invalid.`);
    out.buttons.push({ type: bType, title: bTitle, id });
  });
  return out;
}
