/** The API shapes the inbox reads (DESIGN §5–§6). */
export type Role = 'admin' | 'agent';

export interface User {
  id: string;
  email: string;
  name: string | null;
  role: Role;
  disabled: boolean;
  disabled_at: string | null;
  created_at: string;
}

export interface InboxSettings { response_sla_hours: number; sandbox: boolean; window_policy: string }

export interface Session { user: User; csrf_token: string; expires_at: string; inbox: InboxSettings }

export interface Page<T> { data: T[]; next_cursor: string | null }

export interface ReplyWindow {
  open: boolean;
  expires_at: string | null;
  quota_limit: number | null;
  quota_remaining: number | null;
  can_send_images: boolean | null;
  blocked: string | null;
}

export interface ContactSummary { id: string; username: string | null; display_name: string | null; is_follower: boolean }

export interface Referral {
  source: 'ad' | 'short_link' | string;
  ad?: { advertiser_id?: string; ad_id?: string; ad_name?: string; embed_url?: string; message_material_id?: string; timestamp?: number };
  short_link?: { ref?: string; prefilled_message?: string; prefilled_message_audit_status?: string };
}

export interface Conversation {
  id: string;
  account_id: string;
  status: 'open' | 'resolved';
  assignee_id: string | null;
  contact: ContactSummary;
  external_id: string;
  last_message_at: string | null;
  last_message_preview: string | null;
  last_inbound_at: string | null;
  first_unanswered_at: string | null;
  referral: Referral | null;
  window: ReplyWindow;
  created_at: string;
}

export interface MessageError { code?: string; message?: string; [k: string]: unknown }

export type MessageStatus = 'received' | 'queued' | 'held' | 'sending' | 'sent' | 'read' | 'failed';

export interface Message {
  id: string;
  conversation_id: string;
  account_id: string;
  direction: 'inbound' | 'outbound';
  type: string;
  text: string | null;
  media: { id?: string; kind?: string; url?: string; [k: string]: unknown } | null;
  share_post: { embed_url?: string | null; item_id?: string | null } | null;
  template: unknown;
  unsupported: { original_type?: string; link?: string | null; payload?: unknown } | null;
  referral: Referral | null;
  reply_to: string | null;
  status: MessageStatus;
  source: string;
  error: MessageError | null;
  provider_message_id: string | null;
  sent_by: string | null;
  created_at: string | null;
  updated_at: string | null;
}

export interface Contact {
  id: string;
  provider: string;
  external_id: string;
  username: string | null;
  display_name: string | null;
  avatar_url: string | null;
  is_follower: boolean;
  first_referral: (Referral & { conversation_id?: string; at?: string }) | null;
  attributes: Record<string, unknown>;
  notes: string | null;
  created_at: string | null;
  conversations?: { id: string; account_id: string; status: string }[];
}

export interface Account {
  id: string;
  provider: string;
  external_id: string;
  username: string | null;
  display_name: string | null;
  avatar_url: string | null;
  region: string | null;
  status: 'active' | 'needs_reauth' | 'disconnected' | 'restricted';
  status_reason: string | null;
  scopes: string[];
  token_expires_at: string | null;
  refresh_token_expires_at: string | null;
  backfill: Backfill | null;
  created_at: string;
}

export interface Backfill {
  status: 'queued' | 'running' | 'done' | 'failed';
  days: number;
  conversations_done: number;
  conversations_total: number | null;
  messages: number;
  requested_at: string;
  started_at: string | null;
  finished_at: string | null;
  error: string | null;
}

/** GET /v1/accounts/{id}/health: a live check at TikTok. */
export interface AccountHealth {
  account_id: string;
  status: Account['status'];
  status_reason: string | null;
  healthy: boolean;
  fix: string | null;
  checked_at: string;
  token: { expires_at: string | null; expires_in_s: number | null; refresh_token_expires_at: string | null; refresh_token_expires_in_s: number | null };
  tiktok: { ok: boolean | null; scopes: string[]; missing_scopes: string[]; error: string | null; provider_code: number | null };
  webhook: { ok: boolean | null; callback_url: string | null; expected: string; error: string | null };
  backfill: Backfill | null;
  waiting: { held_replies: number; queued_replies: number; held_webhooks: number };
}

export interface WebhookEndpoint {
  id: string;
  url: string;
  events: string[];
  description: string | null;
  enabled: boolean;
  ordered: boolean;
  disabled_reason: string | null;
  created_at: string;
  signing_secret?: string;
}

export interface DeliveryAttempt {
  id: string;
  delivery_id: string;
  event_id: string;
  event_type: string;
  attempted_at: string;
  status_code: number | null;
  latency_ms: number;
  error: string | null;
  response_body: string | null;
  delivery_status: 'pending' | 'delivering' | 'succeeded' | 'failed';
}

export interface ApiKey { id: string; name: string; prefix: string; created_at: string; last_used_at: string | null; revoked_at: string | null; key?: string }

/** An event from GET /v1/stream (the same body webhooks carry). */
export interface StreamEvent {
  id: string;
  event: string;
  account_id: string | null;
  provider: string;
  timestamp: number;
  conversation_id?: string;
  message_id?: string;
  status?: string;
  error?: MessageError | null;
  assignee_id?: string | null;
  by?: string;
  [k: string]: unknown;
}

export const EVENT_TYPES = [
  'message.received', 'message.sent', 'message.status',
  'conversation.created', 'conversation.referral', 'conversation.assigned', 'conversation.resolved', 'conversation.reopened',
  'contact.created', 'account.connected', 'account.needs_reauth', 'account.disconnected', 'webhook.test',
] as const;
