import { invalid } from '../core/errors.js';

/** The normalized event vocabulary (DESIGN §6), identical for every provider. */
export const EVENT_TYPES = [
  'message.received', 'message.sent', 'message.status',
  'conversation.created', 'conversation.referral', 'conversation.assigned', 'conversation.resolved', 'conversation.reopened',
  'contact.created',
  'account.connected', 'account.needs_reauth', 'account.disconnected',
  'webhook.test',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/**
 * A query's comma-separated event types (null when none): an unknown one is refused, naming the
 * types there are, as a filter that matches nothing would hide a typo.
 */
export function eventTypesOf(raw: string | undefined, field: string): EventType[] | null {
  const list = raw?.split(',').map((t) => t.trim()).filter(Boolean) ?? [];
  if (!list.length) return null;
  const unknown = list.find((t) => !(EVENT_TYPES as readonly string[]).includes(t));
  if (unknown !== undefined) throw invalid(`${field}: there is no event type "${unknown}"; the types are ${EVENT_TYPES.join(', ')}`, { field, allowed: EVENT_TYPES });
  return list as EventType[];
}

export interface ContactSummary {
  id: string;
  username: string | null;
  display_name: string | null;
  is_follower: boolean;
}

export interface Referral {
  source: 'ad' | 'short_link';
  ad?: { advertiser_id?: string; ad_id?: string; ad_name?: string; embed_url?: string; message_material_id?: string; timestamp?: number };
  short_link?: { ref?: string; prefilled_message?: string; prefilled_message_audit_status?: string };
}

/**
 * The fields an event carries besides `id`, `event`, `timestamp` (which the outbox adds). The seed's
 * fields come first in every serialized body, so consumers see the same leading shape everywhere.
 */
export interface EventInput {
  event: EventType;
  account_id: string | null;
  provider: string;
  conversation_id?: string | null;
  /** Seconds. Defaults to the time the event is appended. */
  timestamp?: number;
  data: Record<string, unknown>;
}

export interface StoredEvent {
  id: string;
  seq: number;
  event: EventType;
  payload: string; // serialized body, exactly what subscribers receive
  conversation_id: string | null;
  /** Deliveries created for it (endpoints subscribed when it was appended). */
  deliveries: number;
}
