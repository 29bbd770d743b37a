import type { AppContext } from '../context.js';
import { withAccessToken } from '../accounts/tokens.js';
import { tiktokClient } from '../providers/tiktok/provider.js';
import { gateFor, paced } from './rate-gate.js';
import type { ConversationRow } from './views.js';

/**
 * Whether TikTok lets the business send images in a conversation (capabilities/get IMAGE_SEND: it
 * depends on both parties' regions). Asked once and cached on the conversation for a day: the
 * accept path refuses an image with it, and showing a conversation reports it as
 * `window.can_send_images`, so an agent knows before picking a picture.
 */

/** How long an answer is trusted. */
const CAPABILITY_TTL_MS = 24 * 3600 * 1000;
/** After a failed question, how long showing the conversation does not ask again (each question takes one of the account's rate slots). */
const RETRY_AFTER_FAILURE_MS = 60_000;
/** How long showing a conversation waits for TikTok's answer; a slower answer is stored for the next look. */
const SHOW_WAIT_MS = 400;

type CapabilityConversation = Pick<ConversationRow, 'id' | 'account_id' | 'external_id' | 'last_outbound_at' | 'image_capability' | 'image_capability_checked_at'>;

interface Asking { answer: Promise<boolean>; failedAt: number | null }

/** Per process: one question per conversation at a time, and the time of its last failure. */
const asking = new WeakMap<AppContext, Map<string, Asking>>();

/** The cached answer while it is fresh, else null. */
function cachedImageCapability(conv: CapabilityConversation, now: number): boolean | null {
  if (conv.image_capability === null || conv.image_capability_checked_at === null || now - conv.image_capability_checked_at >= CAPABILITY_TTL_MS) return null;
  return Boolean(conv.image_capability);
}

/** The cached answer, or TikTok's (asked in one of the account's rate slots, then cached). Rejects with TikTok's error. */
export function imageCapability(ctx: AppContext, conv: CapabilityConversation, businessId: string): Promise<boolean> {
  const cached = cachedImageCapability(conv, ctx.clock());
  if (cached !== null) return Promise.resolve(cached);
  let byConversation = asking.get(ctx);
  if (!byConversation) asking.set(ctx, byConversation = new Map());
  const current = byConversation.get(conv.id);
  if (current && current.failedAt === null) return current.answer;
  const entry: Asking = { answer: ask(ctx, conv, businessId), failedAt: null };
  byConversation.set(conv.id, entry);
  entry.answer.then(
    () => { if (byConversation.get(conv.id) === entry) byConversation.delete(conv.id); },
    () => { entry.failedAt = Date.now(); },
  );
  return entry.answer;
}

async function ask(ctx: AppContext, conv: CapabilityConversation, businessId: string): Promise<boolean> {
  const client = tiktokClient(ctx.config);
  const gate = gateFor(ctx, conv.account_id);
  const allowed = await withAccessToken(ctx, conv.account_id, (token) => paced(gate, () =>
    client.canSendImages(token, businessId, conv.external_id, conv.last_outbound_at ? 'SINGLE' : 'STRANGER')));
  await ctx.database.db.updateTable('conversations').set({ image_capability: Number(allowed), image_capability_checked_at: ctx.clock() })
    .where('id', '=', conv.id).execute();
  return allowed;
}

/**
 * For showing a conversation whose window is open: the answer when it is cached, or when TikTok
 * gives it within SHOW_WAIT_MS; otherwise the last answer known (null when there is none), while
 * the question goes on. Never throws: an account that cannot ask, or TikTok failing, leaves the
 * last answer (and a failure is not asked again for a minute).
 */
export async function imageCapabilityForShow(ctx: AppContext, conv: CapabilityConversation): Promise<boolean | null> {
  const last = conv.image_capability === null ? null : Boolean(conv.image_capability);
  const now = ctx.clock();
  if (cachedImageCapability(conv, now) !== null) return last;
  const failedAt = asking.get(ctx)?.get(conv.id)?.failedAt ?? null;
  if (failedAt !== null && Date.now() - failedAt < RETRY_AFTER_FAILURE_MS) return last;
  const account = await ctx.database.db.selectFrom('accounts').select(['status', 'external_id']).where('id', '=', conv.account_id).executeTakeFirst();
  if (account?.status !== 'active') return last;
  const answer = imageCapability(ctx, conv, account.external_id).catch((err: unknown) => {
    ctx.log.debug({ err, conversation_id: conv.id }, 'could not ask TikTok whether the conversation can receive images');
    return last;
  });
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<boolean | null>((resolve) => { timer = setTimeout(() => resolve(last), SHOW_WAIT_MS); });
  try {
    return await Promise.race([answer, waited]);
  } finally {
    clearTimeout(timer);
  }
}
