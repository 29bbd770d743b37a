import { ApiError } from '../core/errors.js';

/**
 * TikTok's content rules (reference/tiktok-api.md §2.3, §4), checked when a reply is accepted so
 * the caller hears about them at once and TikTok never sees a message it would refuse. Pure.
 */
export const TEXT_MAX_CODE_POINTS = 6000;
export const IMAGE_MAX_BYTES = 3 * 1024 * 1024;
export const TEMPLATE_TITLE_MAX = 40;
export const TEMPLATE_BUTTONS_MAX = 3;
export const BUTTON_TITLE_MAX = { QA_BUTTON_CARD: 20, QA_LINK_CARD: 40 } as const;
export const BUTTON_ID_MAX = 40;

export type TemplateType = keyof typeof BUTTON_TITLE_MAX;

export interface TemplateInput {
  type?: TemplateType;
  title: string;
  buttons: { title: string; id?: string }[];
  as_text?: boolean;
}

/** A template as stored on the message and sent to TikTok (ids filled in). */
export interface Template {
  type: TemplateType;
  title: string;
  buttons: { title: string; id: string }[];
  as_text: boolean;
}

export function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

export function checkText(text: string, field = 'text'): void {
  if (text.trim() === '') throw new ApiError('invalid_request', `${field} must not be empty`, { field });
  const length = codePoints(text);
  if (length > TEXT_MAX_CODE_POINTS) {
    throw new ApiError('text_too_long', `${field} is ${length} characters; TikTok allows at most ${TEXT_MAX_CODE_POINTS} (counted in code points, spaces and emoji included)`, {
      field, length, limit: TEXT_MAX_CODE_POINTS,
    });
  }
}

/** Validates a template against TikTok's card rules and fills in button ids. */
export function checkTemplate(t: TemplateInput): Template {
  const type: TemplateType = t.type ?? 'QA_BUTTON_CARD';
  const bad = (message: string, details: Record<string, unknown>) => new ApiError('template_invalid', message, details);
  if (!(type in BUTTON_TITLE_MAX)) throw bad(`template.type must be QA_BUTTON_CARD or QA_LINK_CARD`, { field: 'template.type' });
  const titleLen = codePoints(t.title ?? '');
  if (!t.title || t.title.trim() === '' || titleLen > TEMPLATE_TITLE_MAX) {
    throw bad(`template.title must be 1 to ${TEMPLATE_TITLE_MAX} characters (got ${titleLen})`, { field: 'template.title', length: titleLen, limit: TEMPLATE_TITLE_MAX });
  }
  const buttons = t.buttons ?? [];
  if (buttons.length < 1 || buttons.length > TEMPLATE_BUTTONS_MAX) {
    throw bad(`a template has 1 to ${TEMPLATE_BUTTONS_MAX} buttons (got ${buttons.length})`, { field: 'template.buttons', count: buttons.length, limit: TEMPLATE_BUTTONS_MAX });
  }
  const maxTitle = BUTTON_TITLE_MAX[type];
  const ids = new Set<string>();
  const titles = new Set<string>();
  const out = buttons.map((b, i) => {
    const len = codePoints(b.title ?? '');
    if (!b.title || b.title.trim() === '' || len > maxTitle) {
      throw bad(`template.buttons[${i}].title must be 1 to ${maxTitle} characters on a ${type} (got ${len})`, { field: `template.buttons[${i}].title`, length: len, limit: maxTitle });
    }
    const id = b.id ?? String(i + 1);
    const idLen = codePoints(id);
    if (id === '' || idLen > BUTTON_ID_MAX) {
      throw bad(`template.buttons[${i}].id must be 1 to ${BUTTON_ID_MAX} characters (got ${idLen})`, { field: `template.buttons[${i}].id`, length: idLen, limit: BUTTON_ID_MAX });
    }
    if (ids.has(id)) throw bad(`template.buttons[${i}].id repeats "${id}"`, { field: `template.buttons[${i}].id` });
    ids.add(id);
    // A customer who answers a template by typing an option's title must pick exactly one.
    const key = answerKey(b.title);
    if (titles.has(key)) throw bad(`template.buttons[${i}].title repeats "${b.title}": a customer's answer could not tell the options apart`, { field: `template.buttons[${i}].title` });
    titles.add(key);
    return { title: b.title, id };
  });
  return { type, title: t.title, buttons: out, as_text: Boolean(t.as_text) };
}

/** A template rendered for customers who get it as plain text: the title and numbered options. */
export function templateAsText(t: Template): string {
  return [t.title, ...t.buttons.map((b, i) => `${i + 1}. ${b.title}`)].join('\n');
}

/**
 * Which option a customer's answer picks: its number ("2", "2.", "#2", "(2)") or its title
 * (case, spacing and trailing punctuation ignored). Null when it is neither.
 */
export function matchTemplateAnswer(t: Pick<Template, 'buttons'>, answer: string): { index: number; id: string; title: string } | null {
  const a = answerKey(answer);
  if (!a) return null;
  const num = /^(?:#|no\.?\s*|option\s*)?\(?(\d{1,2})[).:]?$/i.exec(a);
  if (num) {
    const i = Number(num[1]) - 1;
    const b = t.buttons[i];
    if (b) return { index: i + 1, id: b.id, title: b.title };
  }
  const i = t.buttons.findIndex((b) => answerKey(b.title) === a);
  return i >= 0 ? { index: i + 1, id: t.buttons[i].id, title: t.buttons[i].title } : null;
}

/** What an answer and an option's title are compared by: case, spacing and trailing punctuation ignored. */
function answerKey(s: string): string {
  return s.normalize('NFKC').trim().replace(/\s+/g, ' ').replace(/[.!?。！？]+$/u, '').toLowerCase();
}

/** 'image/jpeg' | 'image/png' by magic bytes (never by name or declared type), or null. */
export function imageType(bytes: Uint8Array): 'image/jpeg' | 'image/png' | null {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'image/jpeg';
  const png = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (bytes.length >= 8 && png.every((b, i) => bytes[i] === b)) return 'image/png';
  return null;
}

export function tooLarge(size: number): ApiError {
  return new ApiError('media_too_large', `the image is ${size} bytes; TikTok accepts at most ${IMAGE_MAX_BYTES} (3 MB)`, { size, limit: IMAGE_MAX_BYTES });
}

/** Checks image bytes: JPG or PNG by content, at most 3 MB. Returns the content type. */
export function checkImage(bytes: Uint8Array): 'image/jpeg' | 'image/png' {
  if (bytes.length === 0) throw new ApiError('media_unsupported', 'the image is empty', { size: 0 });
  if (bytes.length > IMAGE_MAX_BYTES) throw tooLarge(bytes.length);
  const type = imageType(bytes);
  if (!type) throw new ApiError('media_unsupported', 'only JPG and PNG images can be sent (checked by content, not by name)', { accepted: ['image/jpeg', 'image/png'] });
  return type;
}

/** Strict base64 (standard or url-safe alphabet, optional padding, optional data: URL prefix). */
export function decodeBase64(raw: string): Buffer | null {
  const s = raw.replace(/^data:[^;,]*;base64,/, '').replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(s) || s.length % 4 === 1) return null;
  return Buffer.from(s, s.includes('-') || s.includes('_') ? 'base64url' : 'base64');
}
