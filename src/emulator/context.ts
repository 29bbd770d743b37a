/**
 * The runtime context every route module shares: options, the mutable runtime configuration
 * (/_control/config), state, counters, the webhook pusher and injected faults.
 */
import type { Logger } from 'pino';
import type { StateStore, Stats } from './state.js';
import type { PushConfig, WebhookPusher } from './webhooks-push.js';
import type { QpsLimiter } from './messaging-rules.js';

/** Field names match the /_control/config body, so the control route can apply a patch directly. */
export interface RuntimeConfig extends PushConfig {
  /** Push (and await the first delivery attempt of) the im_send_msg echo before answering send/. */
  echo_before_response: boolean;
  /** Delay between the send/ response and the echo push when echo_before_response is false. */
  echo_delay_ms: number;
  /** How long send/ takes to answer once the message is recorded (a slow network or a busy TikTok). */
  send_delay_ms: number;
  qps: number;
  daily_cap: number;
  window_hours: number;
  window_quota: number;
  /** Scopes the app holds; requesting any other scope on the consent page fails with invalid_scope. */
  app_scopes: string[];
  access_token_ttl_s: number;
  refresh_token_ttl_s: number;
  auth_code_ttl_s: number;
}

export interface Fault { code: number; message?: string; remaining: number }

export interface EmulatorContext {
  appId: string;
  appSecret: string;
  clock: () => number;
  log: Logger;
  config: RuntimeConfig;
  store: StateStore;
  stats: Stats;
  pusher: WebhookPusher;
  /** Keyed by endpoint path after /open_api/v1.3/, with its trailing slash. */
  faults: Map<string, Fault>;
  qps: QpsLimiter;
}

/** Chatwoot's full scope list (tiktok-api.md §1.5): what a fully approved app holds. */
export const DEFAULT_APP_SCOPES = [
  'user.info.basic', 'user.info.username', 'user.info.stats', 'user.info.profile', 'user.account.type',
  'user.insights', 'message.list.read', 'message.list.send', 'message.list.manage',
];

/** Roughly TikTok's "retries with backoff for up to 72 h": these delays add up to about 71.7 h. */
export const DEFAULT_RETRY_DELAYS_MS = [
  1_000, 5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000, 7_200_000, 14_400_000,
  28_800_000, 43_200_000, 43_200_000, 43_200_000, 43_200_000, 28_800_000,
];
