import type { AppContext } from '../context.js';
import type { AccountRow } from '../accounts/store.js';
import { withAccessToken } from '../accounts/tokens.js';
import { chunks } from '../core/chunks.js';
import { tiktokClient } from '../providers/tiktok/provider.js';
import { decodeRestMessage } from '../providers/tiktok/webhook-events.js';
import type { ProviderEvent } from '../providers/types.js';

/** Clock skew between TikTok's timestamps and the conversation list's update times. */
const SLACK_MS = 2 * 60 * 1000;

export interface FetchedMessage { event: ProviderEvent; recent: boolean; timestampMs: number }

/**
 * Runs each TikTok call in the account's rate budget: TikTok counts every business/message/ call
 * of a business against one limit, so reads share the sender's gate (messaging/rate-gate.ts).
 */
export type Pace = <T>(call: () => Promise<T>) => Promise<T>;

/**
 * Conversations updated at or after `floorMs`, from both lists (STRANGER: not yet answered;
 * SINGLE: answered), newest first, without duplicates.
 */
export async function listConversationIds(ctx: AppContext, account: AccountRow, floorMs: number, pace: Pace): Promise<string[]> {
  const client = tiktokClient(ctx.config);
  const conversations: string[] = [];
  for (const type of ['STRANGER', 'SINGLE'] as const) {
    let cursor = 0;
    for (let page = 0; page < 50; page++) {
      const res = await withAccessToken(ctx, account.id, (t) => pace(() => client.listConversations(t, account.external_id, type, cursor)));
      for (const c of res.conversations ?? []) {
        const updated = Number(c.update_time ?? c.up_time ?? 0);
        const updatedMs = updated < 1e12 ? updated * 1000 : updated;
        if (!updated || updatedMs >= floorMs) conversations.push(c.conversation_id);
      }
      if (!res.has_more) break;
      cursor = res.cursor;
    }
  }
  return [...new Set(conversations)];
}

/** How many of a conversation's latest messages TikTok lists (reference/tiktok-api.md §2). */
export const LISTED_MESSAGES = 20;

/** A conversation's latest messages (TikTok gives at most LISTED_MESSAGES), oldest first; `recent` from `recentFromMs` on. */
export async function fetchConversation(ctx: AppContext, account: AccountRow, conversationId: string, recentFromMs: number, pace: Pace): Promise<FetchedMessage[]> {
  const client = tiktokClient(ctx.config);
  const { messages, participants } = await withAccessToken(ctx, account.id, (t) => pace(() => client.listMessages(t, account.external_id, conversationId)));
  const sorted = [...(messages ?? [])].sort((a, b) => a.timestamp - b.timestamp);
  return sorted.map((m) => ({
    event: decodeRestMessage(m, conversationId, participants ?? [], account.external_id), recent: m.timestamp >= recentFromMs, timestampMs: m.timestamp,
  }));
}

/**
 * Reads recent messages through the REST API, for TikTok's EEA webhooks (which carry no content).
 * Conversations come from both lists; each gives at most its 20 latest messages. `recent` marks
 * messages at or after `sinceMs`, which are announced as new; older ones are stored as history.
 */
export async function fetchRecentMessages(ctx: AppContext, account: AccountRow, sinceMs: number, pace: Pace): Promise<FetchedMessage[]> {
  const listed = await listConversationIds(ctx, account, sinceMs - SLACK_MS, pace);
  // Conversations whose customer DMs come by webhook, with content (outside the EEA), have nothing
  // to read here: on a busy account they are most of those updated lately (our replies update them).
  const byWebhook = new Set<string>();
  for (const part of chunks(listed)) {
    const rows = await ctx.database.db.selectFrom('conversations').select('external_id')
      .where('account_id', '=', account.id).where('external_id', 'in', part).where('content_by_webhook', '=', 1).execute();
    for (const r of rows) byWebhook.add(r.external_id);
  }
  const ids = listed.filter((id) => !byWebhook.has(id));
  const out: FetchedMessage[] = [];
  for (const id of ids) out.push(...await fetchConversation(ctx, account, id, sinceMs - SLACK_MS, pace));
  return out;
}
