import type { Referral } from '../events/types.js';

/**
 * What the rest of dmgate knows about a messaging provider. TikTok is the first implementation;
 * the interface is shaped by where the next providers differ (DESIGN §2): how webhooks are
 * verified, what an inbound event means, how replies are windowed, and how errors are classified.
 */

export type WebhookCheck = { ok: true } | { ok: false; reason: string };

export interface ProviderUser {
  externalId: string;
  username: string | null;
  displayName: string | null;
  avatarUrl: string | null;
  isFollower: boolean | null;
}

export type MessageType = 'text' | 'image' | 'share_post' | 'template' | 'unsupported';

export interface ProviderMessage {
  providerMessageId: string;
  timestampMs: number;
  type: MessageType;
  text: string | null;
  media: { providerMediaId: string; kind: 'image' | 'video' } | null;
  /** Type-specific fields kept for consumers: share_post, template, unsupported original, reply source. */
  extra: Record<string, unknown> | null;
  replyToProviderId: string | null;
}

/** A provider webhook, decoded into what happened. One webhook can mean several things. */
export type ProviderEvent =
  | { kind: 'customer_message'; businessId: string; conversationId: string; customer: ProviderUser; message: ProviderMessage }
  | { kind: 'business_message'; businessId: string; conversationId: string; customer: ProviderUser; message: ProviderMessage; origin: 'api' | 'app' }
  | { kind: 'referral'; businessId: string; conversationId: string; customer: ProviderUser; referral: Referral; timestampMs: number }
  | { kind: 'read'; businessId: string; conversationId: string; customer: ProviderUser | null; readUpToMs: number }
  /** The provider withheld the content (TikTok's EEA events): fetch recent messages through the API. */
  | { kind: 'sync_needed'; businessId: string; sinceMs: number }
  | { kind: 'ignored'; businessId: string | null; reason: string };

export interface InboundEnvelope {
  eventType: string;
  businessId: string | null;
  /** Key that collapses provider retries of the same webhook into one stored row. */
  dedupeKey: string;
  /** The provider's id of the message the webhook is about, when it names one. */
  providerMessageId: string | null;
}

/** What to do about a failed provider call. */
export type ErrorAction = 'retry' | 'refresh' | 'reauthorize' | 'restricted' | 'refuse';

/** Reply-window rules as data: a provider's window is a value, not code (DESIGN §4). */
export interface WindowPolicy {
  name: string;
  windowMs: number;
  quota: number;
  /** After the window closes, messages still allowed until the customer writes (0 for TikTok's default). */
  afterExpiryQuota: number;
  /** Once the business replied inside a window, the quota no longer applies until the window ends. */
  unlimitedAfterReply: boolean;
}
