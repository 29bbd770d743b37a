/**
 * Everything the emulator remembers, as one JSON-serialisable object so sandbox mode can survive
 * restarts by writing it to `statePath` (debounced, atomic rename). Counters and rate-limit
 * windows are deliberately not persisted: they describe one run.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { writeFile, rename, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';

export interface BusinessRec {
  open_id: string;
  username: string;
  display_name: string;
  region: string;
  followers_count: number;
  created_at: number;
}

export interface CustomerRec {
  unique_identifier: string;
  username: string;
  display_name: string;
  region: string;
  is_follower: boolean;
  created_at: number;
}

export type MessageSource = 'API' | 'APP';
/** Lower-case type names, as webhooks carry them; REST upper-cases them. */
export type MessageType = 'text' | 'image' | 'share_post' | 'template' | 'video' | 'sticker' | 'emoji';

export interface TemplateButton { type: string; title: string; id: string }
export interface TemplateBody { type: string; title: string; buttons: TemplateButton[] }

export interface MessageRec {
  message_id: string;
  conversation_id: string;
  direction: 'inbound' | 'outbound';
  source: MessageSource;
  type: MessageType;
  timestamp: number;
  text?: { body: string };
  image?: { media_id: string };
  share_post?: { item_id: string; embed_url: string };
  video?: { media_id: string };
  sticker?: { url: string };
  emoji?: { url: string };
  template?: TemplateBody;
  referenced_message_info?: { referenced_message_id: string };
}

export interface AdReferral {
  advertiser_id: string; ad_id: string; timestamp: number; ad_name: string; embed_url: string; message_material_id: string;
}
export interface ShortLinkReferral { ref: string; prefilled_message: string; prefilled_message_audit_status: string }

export interface ConversationRec {
  conversation_id: string;
  business_id: string;
  customer_id: string;
  created_at: number;
  /** Time of the latest message or referral, ms. */
  update_time: number;
  /** Latest customer message, ms; null until the customer writes (a referral alone opens nothing). */
  last_customer_at: number | null;
  /** Business messages (API or app) since the latest customer message: the quota used. */
  sent_since: number;
  /** SINGLE once the business has replied, STRANGER before. */
  business_replied: boolean;
  last_read_at: number | null;
  referrals: { ad: AdReferral[]; short_link: ShortLinkReferral[] };
  /** Kept bounded (MAX_MESSAGES_PER_CONVERSATION); content/list shows only the 20 latest anyway. */
  messages: MessageRec[];
}

export interface AccessTokenRec { token: string; business_id: string; scope: string[]; expires_at: number; revoked: boolean }
export interface RefreshTokenRec {
  token: string; business_id: string; scope: string[]; expires_at: number; revoked: boolean;
  /** Set when a refresh replaced this token: it then answers 40107. */
  rotated: boolean;
}
export interface AuthCodeRec { code: string; business_id: string; redirect_uri: string; scope: string[]; expires_at: number; used: boolean }
export interface MediaRec { media_id: string; business_id: string; mime: string; data_b64: string; created_at: number; expires_at: number }

export interface SentRec {
  message_id: string;
  conversation_id: string;
  business_id: string;
  business_username: string;
  customer_id: string;
  message_type: string;
  text: { body: string } | null;
  image: { media_id: string } | null;
  share_post: { item_id: string } | null;
  template: TemplateBody | null;
  referenced_message_info: { referenced_message_id: string } | null;
  timestamp: number;
}

/** A webhook push waiting for (another) attempt. `next_attempt_at` is wall-clock ms (timers are real). */
export interface PushRec {
  id: string;
  event: string;
  user_openid: string;
  create_time: number;
  content: string;
  attempts: number;
  next_attempt_at: number;
}

export interface StateData {
  version: 1;
  businesses: Record<string, BusinessRec>;   // by open_id
  customers: Record<string, CustomerRec>;    // by unique_identifier
  conversations: Record<string, ConversationRec>; // by conversation_id
  access_tokens: Record<string, AccessTokenRec>;
  refresh_tokens: Record<string, RefreshTokenRec>;
  auth_codes: Record<string, AuthCodeRec>;
  media: Record<string, MediaRec>;
  /** Callback per event_type (DIRECT_MESSAGE is the one that matters here). */
  webhooks: Record<string, { callback_url: string }>;
  sent: SentRec[];
  /** Per business: the UTC day number and the conversations replied to that day (daily cap). */
  daily: Record<string, { day: number; conversations: string[] }>;
  pushes: Record<string, PushRec>;
}

export const MAX_MESSAGES_PER_CONVERSATION = 500;

export function emptyState(): StateData {
  return {
    version: 1, businesses: {}, customers: {}, conversations: {}, access_tokens: {}, refresh_tokens: {},
    auth_codes: {}, media: {}, webhooks: {}, sent: [], daily: {}, pushes: {},
  };
}

export interface Stats {
  calls: Record<string, number>;
  refresh_calls: Record<string, number>;
  violations: { qps: number; window: number; quota: number; daily_cap: number; content: number };
  webhooks: { pending: number; delivered: number; failed_attempts: number; given_up: number; dropped: number };
  sender_actions: number;
}

export function emptyStats(): Stats {
  return {
    calls: {}, refresh_calls: {},
    violations: { qps: 0, window: 0, quota: 0, daily_cap: 0, content: 0 },
    webhooks: { pending: 0, delivered: 0, failed_attempts: 0, given_up: 0, dropped: 0 },
    sender_actions: 0,
  };
}

/**
 * The next write waits at least this many times as long as the last serialization took. In sandbox
 * mode the emulator runs in the gateway's process, and its state (conversations, every send) only
 * grows: at 100,000 messages JSON.stringify takes 170-200 ms, and with a write 150 ms after every
 * change the gateway's event loop spent over a third of its time serializing (bench:sandbox-state).
 * With 20 the writes cost it about 5 %; a crash can lose up to that gap of the emulator's latest
 * changes (a clean stop flushes them).
 */
export const WRITE_GAP_FACTOR = 20;
const MAX_WRITE_GAP_MS = 60_000;

/** How long a change waits before its state write: the debounce, or longer after slow serializations. */
export function writeDelay(debounceMs: number, lastSerializeMs: number, gapFactor = WRITE_GAP_FACTOR): number {
  return Math.max(debounceMs, Math.min(MAX_WRITE_GAP_MS, lastSerializeMs * gapFactor));
}

/** Owns the state object and its optional JSON file. */
export class StateStore {
  data: StateData;
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();
  /** How long the last write's JSON.stringify took (ms): it sets the gap before the next. */
  lastSerializeMs = 0;
  /** Writes so far and the time their serializations took in all (bench/sandbox-state.ts). */
  readonly written = { count: 0, serializeMs: 0 };

  constructor(
    private readonly path: string | undefined,
    private readonly log: Logger,
    private readonly debounceMs = 150,
    private readonly gapFactor = WRITE_GAP_FACTOR,
  ) {
    this.data = path ? loadState(path, log) : emptyState();
  }

  reset(): void {
    this.data = emptyState();
    // The blank state is small: written after the debounce, not after the old state's gap.
    this.lastSerializeMs = 0;
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    this.changed();
  }

  /** Call after any mutation; coalesces writes so a burst of sends costs one file write. */
  changed(): void {
    if (!this.path || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.writing = this.writing.then(() => this.writeAsync()).catch((err: unknown) => this.log.error({ err }, 'emulator: state write failed'));
    }, writeDelay(this.debounceMs, this.lastSerializeMs, this.gapFactor));
    this.timer.unref();
  }

  /** Waits for any write in progress, then writes the current state at once (used by close()). */
  async flush(): Promise<void> {
    await this.writing;
    if (!this.path) return;
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    mkdirSync(dirname(this.path), { recursive: true });
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, this.serialize());
    renameSync(tmp, this.path);
  }

  private serialize(): string {
    const started = performance.now();
    const text = JSON.stringify(this.data);
    this.lastSerializeMs = performance.now() - started;
    this.written.count++;
    this.written.serializeMs += this.lastSerializeMs;
    return text;
  }

  private async writeAsync(): Promise<void> {
    if (!this.path) return;
    await mkdir(dirname(this.path), { recursive: true });
    const tmp = `${this.path}.tmp`;
    await writeFile(tmp, this.serialize());
    await rename(tmp, this.path);
  }
}

function loadState(path: string, log: Logger): StateData {
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyState();
    throw err;
  }
  try {
    const parsed = JSON.parse(raw) as Partial<StateData>;
    // Merge over an empty state so files written by an older version gain new collections.
    return { ...emptyState(), ...parsed, version: 1 };
  } catch (err) {
    // A corrupt sandbox file should not stop the gateway from starting; say so loudly.
    log.error({ err, path }, 'emulator: state file unreadable, starting empty');
    return emptyState();
  }
}
