import { parseJson } from '../db/database.js';
import type { SendBody } from '../providers/tiktok/api-client.js';
import { templateAsText, type Template } from './content.js';
import type { Candidate } from './pending-replies.js';

/** TikTok's send/ body for a stored reply (reference/tiktok-api.md §2.3). */
export function sendBody(c: Pick<Candidate, 'type' | 'text' | 'extra'>, mediaId: string | null): SendBody {
  const extra = parseJson<{ template?: Template; share_post?: { item_id: string }; reply_to_provider_id?: string }>(c.extra, {});
  const quote = extra.reply_to_provider_id ? { referenced_message_info: { referenced_message_id: extra.reply_to_provider_id } } : {};
  switch (c.type) {
    case 'image':
      return { message_type: 'IMAGE', image: { media_id: mediaId! } };
    case 'share_post':
      return { message_type: 'SHARE_POST', share_post: { item_id: extra.share_post!.item_id } };
    case 'template': {
      const t = extra.template!;
      if (t.as_text) return { message_type: 'TEXT', text: { body: c.text ?? templateAsText(t) }, ...quote };
      return { message_type: 'TEMPLATE', template: { type: t.type, title: t.title, buttons: t.buttons.map((b) => ({ type: 'REPLY', title: b.title, id: b.id })) } };
    }
    default:
      return { message_type: 'TEXT', text: { body: c.text ?? '' }, ...quote };
  }
}
