/**
 * Signed webhook delivery to the callback registered with business/webhook/update/.
 *
 * Each push is a PushRec in the state (so sandbox mode keeps undelivered pushes across restarts).
 * Ready pushes run with bounded concurrency; a non-200 answer or a network error schedules the
 * next attempt after the next configured delay, like TikTok's retries for up to 72 h. Every
 * attempt is re-signed with a fresh `t`, and the body is byte-identical across attempts.
 */
import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import type { PushRec, StateStore, Stats } from './state.js';
import { requestId } from './ids.js';
import { randomIdHex } from '../core/random-pool.js';
import { HttpPoster } from '../webhooks/http-post.js';

export interface PushConfig {
  webhook_retry_delays_ms: number[];
  webhook_concurrency: number;
  webhook_timeout_ms: number;
}

export interface PushDeps {
  appId: string;
  appSecret: string;
  store: StateStore;
  stats: Stats;
  config: PushConfig;
  /** Emulated time: used for create_time and the signature's t, so a gateway sharing the clock verifies it. */
  clock: () => number;
  log: Logger;
}

/** `t=<unix s>,s=<hex HMAC-SHA256(secret, t + "." + body)>` (tiktok-api.md §3.4). */
export function signWebhook(key: KeyObject, t: number, rawBody: string): string {
  const s = createHmac('sha256', key).update(`${t}.${rawBody}`).digest('hex');
  return `t=${t},s=${s}`;
}

export class WebhookPusher {
  private readonly key: KeyObject;
  private readonly ready: string[] = [];
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly firstAttemptWaiters = new Map<string, Array<() => void>>();
  private inFlight = 0;
  private closed = false;
  private readonly poster = new HttpPoster();

  constructor(private readonly deps: PushDeps) {
    this.key = createSecretKey(Buffer.from(deps.appSecret, 'utf8'));
  }

  /** Re-schedules pushes persisted by a previous run. */
  resume(): void {
    const now = Date.now();
    for (const p of Object.values(this.deps.store.data.pushes)) this.schedule(p.id, Math.max(0, p.next_attempt_at - now));
    this.refreshPending();
  }

  /**
   * Queues an event. The returned promise settles when the first delivery attempt has finished
   * (successfully or not), which is what "echo before response" waits for. Without a registered
   * callback there is nobody to tell: the event is dropped and counted, as TikTok would.
   */
  push(event: string, userOpenId: string, content: Record<string, unknown>): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (!this.callbackUrl()) {
      this.deps.stats.webhooks.dropped++;
      this.deps.log.debug({ event }, 'emulator: no DIRECT_MESSAGE callback registered, event dropped');
      return Promise.resolve();
    }
    const rec: PushRec = {
      id: randomIdHex(12),
      event,
      user_openid: userOpenId,
      create_time: Math.floor(this.deps.clock() / 1000),
      content: JSON.stringify(content),
      attempts: 0,
      next_attempt_at: Date.now(),
    };
    this.deps.store.data.pushes[rec.id] = rec;
    this.deps.store.changed();
    const done = new Promise<void>((resolve) => this.firstAttemptWaiters.set(rec.id, [resolve]));
    this.ready.push(rec.id);
    this.deps.stats.webhooks.pending++;
    this.pump();
    return done;
  }

  /** Drops every queued push (used by /_control/reset). */
  clear(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.ready.length = 0;
    for (const waiters of this.firstAttemptWaiters.values()) waiters.forEach((w) => w());
    this.firstAttemptWaiters.clear();
    this.refreshPending();
  }

  close(): void {
    this.closed = true;
    this.poster.close();
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.ready.length = 0;
    for (const waiters of this.firstAttemptWaiters.values()) waiters.forEach((w) => w());
    this.firstAttemptWaiters.clear();
  }

  private callbackUrl(): string | undefined {
    return this.deps.store.data.webhooks['DIRECT_MESSAGE']?.callback_url;
  }

  private schedule(id: string, delayMs: number): void {
    const timer = setTimeout(() => {
      this.timers.delete(id);
      this.ready.push(id);
      this.pump();
    }, delayMs);
    timer.unref();
    this.timers.set(id, timer);
  }

  private pump(): void {
    while (!this.closed && this.inFlight < Math.max(1, this.deps.config.webhook_concurrency) && this.ready.length > 0) {
      const id = this.ready.shift()!;
      const rec = this.deps.store.data.pushes[id];
      if (!rec) continue;
      this.inFlight++;
      void this.attempt(rec).finally(() => {
        this.inFlight--;
        const waiters = this.firstAttemptWaiters.get(id);
        if (waiters) { this.firstAttemptWaiters.delete(id); waiters.forEach((w) => w()); }
        this.pump();
      });
    }
  }

  private async attempt(rec: PushRec): Promise<void> {
    const url = this.callbackUrl();
    if (!url) {
      this.finish(rec);
      this.deps.stats.webhooks.dropped++;
      return;
    }
    const body = JSON.stringify({
      client_key: this.deps.appId,
      event: rec.event,
      create_time: rec.create_time,
      user_openid: rec.user_openid,
      content: rec.content,
    });
    const t = Math.floor(this.deps.clock() / 1000);
    // Keep-alive node:http (no redirects followed): at thousands of pushes per second, fetch would
    // cost the emulator more CPU than the gateway spends on acknowledging them.
    const res = await this.poster.post(url, body, {
      'tiktok-signature': signWebhook(this.key, t, body),
      'x-tt-logid': requestId(this.deps.clock()),
      'webhook-schema-version': '1.0',
      'user-agent': 'TikTok-Webhook',
    }, { timeoutMs: this.deps.config.webhook_timeout_ms, allowPrivate: true });
    const status = res.status ?? 0;
    const error = res.error;
    // Closed, or the state was reset while this attempt was in flight: nothing left to update.
    if (this.closed || this.deps.store.data.pushes[rec.id] !== rec) return;
    rec.attempts++;
    // TikTok counts only HTTP 200 as delivered (tiktok-api.md §3.5).
    if (status === 200) {
      this.deps.stats.webhooks.delivered++;
      this.finish(rec);
      return;
    }
    this.deps.stats.webhooks.failed_attempts++;
    const delays = this.deps.config.webhook_retry_delays_ms;
    const delay = delays[rec.attempts - 1];
    this.deps.log.warn({ event: rec.event, status, err: error, attempt: rec.attempts, retry_in_ms: delay ?? null }, 'emulator: webhook push failed');
    if (delay === undefined) {
      this.deps.stats.webhooks.given_up++;
      this.finish(rec);
      return;
    }
    rec.next_attempt_at = Date.now() + delay;
    this.deps.store.changed();
    this.schedule(rec.id, delay);
  }

  private finish(rec: PushRec): void {
    if (this.deps.store.data.pushes[rec.id] !== rec) return;
    delete this.deps.store.data.pushes[rec.id];
    this.deps.store.changed();
    this.deps.stats.webhooks.pending--;
  }

  /** Recounts from the state (cheap enough at resume/reset; pushes and finishes adjust by one). */
  private refreshPending(): void {
    this.deps.stats.webhooks.pending = Object.keys(this.deps.store.data.pushes).length;
  }
}
