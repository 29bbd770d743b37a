import type { Generated } from 'kysely';

/**
 * Table types. Times are epoch milliseconds (BIGINT on Postgres, parsed to number); booleans are
 * 0/1 integers and JSON is text on both dialects so one query serves both.
 */
export interface AccountsTable {
  id: string;
  provider: string;
  external_id: string;
  username: string | null;
  display_name: string | null;
  avatar_url: string | null;
  region: string | null;
  status: 'active' | 'needs_reauth' | 'disconnected' | 'restricted';
  status_reason: string | null;
  scopes: string; // JSON array
  access_token_enc: string | null;
  refresh_token_enc: string | null;
  token_expires_at: number | null;
  refresh_expires_at: number | null;
  token_version: number;
  refresh_lock_until: number | null;
  backfill: string | null; // JSON progress
  created_at: number;
  updated_at: number;
}

export interface ContactsTable {
  id: string;
  provider: string;
  external_id: string;
  username: string | null;
  display_name: string | null;
  avatar_url: string | null;
  is_follower: number;
  first_referral: string | null; // JSON
  attributes: string; // JSON object
  notes: string | null;
  created_at: number;
  updated_at: number;
}

export interface ConversationsTable {
  id: string;
  account_id: string;
  contact_id: string;
  external_id: string;
  status: 'open' | 'resolved';
  assignee_id: string | null;
  last_inbound_at: number | null;
  last_outbound_at: number | null;
  outbound_since_inbound: number;
  first_unanswered_at: number | null;
  last_message_at: number | null;
  last_message_preview: string | null;
  customer_read_at: number | null;
  referral: string | null; // JSON
  image_capability: number | null;
  image_capability_checked_at: number | null;
  /** The UTC day (its first ms) of replies_that_day: the daily cap's state, kept by triggers (migration 006). */
  replied_day: number | null;
  /** That day's outbound messages in this conversation that are not failed. */
  replies_that_day: Generated<number>;
  /** 1 once a customer DM of this conversation came by webhook with its content (migration 008): EEA reads skip it. */
  content_by_webhook: number | null;
  created_at: number;
  updated_at: number;
}

export interface MessagesTable {
  id: string;
  conversation_id: string;
  account_id: string;
  direction: 'inbound' | 'outbound';
  provider_message_id: string | null;
  type: string;
  text: string | null;
  media: string | null; // JSON
  extra: string | null; // JSON: share_post, template, referral, reply_to, unsupported original type
  source: 'api' | 'inbox' | 'auto_reply' | 'tiktok_app' | 'customer';
  status: 'received' | 'queued' | 'held' | 'sending' | 'sent' | 'read' | 'failed';
  error: string | null; // JSON
  idempotency_key: string | null;
  request_hash: string | null;
  reply_to: string | null;
  sent_by: string | null;
  attempts: number;
  next_attempt_at: number | null;
  counted_in_window: number;
  provider_timestamp: number | null;
  created_at: number;
  updated_at: number;
}

export interface MediaTable {
  id: string;
  message_id: string | null;
  account_id: string | null;
  provider_media_id: string | null;
  content_type: string | null;
  size: number | null;
  data: Buffer | null;
  created_at: number;
}

export interface InboundEventsTable {
  seq: Generated<number>;
  provider: string;
  dedupe_key: string;
  event_type: string;
  business_id: string | null;
  body: string;
  status: 'pending' | 'processed' | 'ignored' | 'held' | 'failed';
  attempts: number;
  next_attempt_at: number;
  error: string | null;
  received_at: number;
  processed_at: number | null;
}

export interface EventsTable {
  seq: Generated<number>;
  id: string;
  type: string;
  account_id: string | null;
  conversation_id: string | null;
  payload: string;
  created_at: number;
}

export interface WebhookEndpointsTable {
  id: string;
  url: string;
  events: string; // JSON array
  description: string | null;
  enabled: number;
  disabled_reason: string | null;
  ordered: number;
  secret_enc: string;
  /** After a rotation: the secret replaced, and until when deliveries are signed with it too (ms). */
  previous_secret_enc: string | null;
  previous_secret_until: number | null;
  created_at: number;
  updated_at: number;
}

export interface DeliveriesTable {
  id: string;
  event_id: string;
  event_seq: number;
  endpoint_id: string;
  conversation_id: string | null;
  status: 'pending' | 'delivering' | 'succeeded' | 'failed';
  attempts: number;
  next_attempt_at: number;
  locked_until: number | null;
  last_status_code: number | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
}

export interface DeliveryAttemptsTable {
  id: string;
  delivery_id: string;
  endpoint_id: string;
  attempted_at: number;
  status_code: number | null;
  latency_ms: number;
  error: string | null;
  response_body: string | null;
}

export interface ApiKeysTable {
  id: string;
  name: string;
  key_hash: string;
  key_prefix: string;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

export interface UsersTable {
  id: string;
  email: string;
  name: string | null;
  role: 'admin' | 'agent';
  password_hash: string;
  created_at: number;
  disabled_at: number | null;
}

export interface SessionsTable {
  id: string; // sha256 of the cookie token
  user_id: string;
  csrf_token: string;
  created_at: number;
  expires_at: number;
}

export interface OauthStatesTable {
  state_hash: string;
  provider: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  return_to: string | null;
}

export interface LeasesTable {
  name: string;
  owner: string;
  expires_at: number;
}

export interface LinksTable {
  id: string;
  account_id: string;
  ref: string;
  prefilled_message: string | null;
  url: string;
  created_at: number;
}

export interface DB {
  accounts: AccountsTable;
  contacts: ContactsTable;
  conversations: ConversationsTable;
  messages: MessagesTable;
  media: MediaTable;
  inbound_events: InboundEventsTable;
  events: EventsTable;
  webhook_endpoints: WebhookEndpointsTable;
  deliveries: DeliveriesTable;
  delivery_attempts: DeliveryAttemptsTable;
  api_keys: ApiKeysTable;
  users: UsersTable;
  sessions: SessionsTable;
  oauth_states: OauthStatesTable;
  leases: LeasesTable;
  links: LinksTable;
}
