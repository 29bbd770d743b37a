import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import type { Logger } from './logger.js';

/**
 * Wake-ups between loops ("new inbound event", "new deliveries", "new outbound message") and
 * realtime fan-out. In one process it is an EventEmitter; on Postgres it also rides LISTEN/NOTIFY
 * so that every process of a cluster hears it. Nothing is ever only here: the database holds the
 * work, the bus only says "look now".
 */
export type Topic = 'inbound' | 'deliveries' | 'outbound' | 'events' | 'endpoints' | 'accounts';
const TOPICS: Topic[] = ['inbound', 'deliveries', 'outbound', 'events', 'endpoints', 'accounts'];
const CHANNEL = 'dmgate_bus';
/** Longest an announcement waits for other processes (local listeners hear it at once). */
const FLUSH_INTERVAL_MS = 5;
/** Backoff between attempts to listen again after the LISTEN connection died. */
const RELISTEN_FIRST_MS = 100;
const RELISTEN_MAX_MS = 5000;

export class Bus {
  private readonly emitter = new EventEmitter();
  private client: pg.PoolClient | null = null;
  private closed = false;
  private readonly pending = new Set<string>();
  private flushScheduled = false;
  private flushing = false;
  /** When the last NOTIFY was sent (performance.now()). */
  private lastFlushAt = -Infinity;

  constructor(private readonly log: Logger, private readonly pool?: pg.Pool) {
    this.emitter.setMaxListeners(0);
  }

  async start(): Promise<void> {
    if (!this.pool) return;
    await this.listen();
  }

  private async listen(): Promise<void> {
    const client = await this.pool!.connect();
    client.on('notification', (msg) => {
      if (msg.channel !== CHANNEL || !msg.payload) return;
      const [origin, topic, data] = splitOnce(msg.payload);
      if (origin === String(process.pid) + ':' + this.instance) return; // our own, already emitted locally
      if (TOPICS.includes(topic as Topic)) this.emitter.emit(topic, data || undefined);
    });
    client.on('error', (err) => this.lost(client, err));
    try {
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (err) {
      client.release(err as Error);
      throw err;
    }
    if (this.closed) {
      client.release();
      return;
    }
    this.client = client;
  }

  /**
   * The LISTEN connection died (the server restarted or ended it): listen again on a new one, with
   * backoff. Announcements from other processes meanwhile are lost, so once listening again every
   * topic is announced locally: each loop looks at the database once, as after any wake-up.
   */
  private lost(client: pg.PoolClient, err: Error): void {
    if (this.client !== client) return;
    this.client = null;
    client.release(err);
    this.log.warn({ err }, 'bus: the LISTEN connection was lost; listening again on a new one');
    const retry = (attempt: number) => {
      const timer = setTimeout(() => {
        if (this.closed) return;
        this.listen().then(() => {
          if (this.closed) return;
          this.log.info({ attempts: attempt + 1 }, 'bus: listening again');
          for (const topic of TOPICS) this.emitter.emit(topic, undefined);
        }, (retryErr: unknown) => {
          this.log.warn({ err: retryErr, attempt: attempt + 1 }, 'bus: listening again failed; retrying');
          retry(attempt + 1);
        });
      }, Math.min(RELISTEN_MAX_MS, RELISTEN_FIRST_MS * 2 ** attempt));
      timer.unref();
    };
    retry(0);
  }

  private readonly instance = Math.random().toString(36).slice(2, 8);

  /**
   * Announces work on a topic: local listeners at once, other processes through NOTIFY. Coalesced:
   * everything announced while a NOTIFY is on its way, or within FLUSH_INTERVAL_MS of the last one,
   * goes in the next one, as one statement (each NOTIFY is a commit that takes the server's
   * notification-queue lock, so one per announcement would cost more than the work it announces).
   */
  notify(topic: Topic, data?: string): void {
    this.emitter.emit(topic, data);
    if (!this.pool) return;
    this.pending.add(topic + '\u0001' + (data ?? ''));
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.flushing || !this.pending.size) return;
    this.flushScheduled = true;
    const run = () => {
      this.flushScheduled = false;
      void this.flush();
    };
    // At most one NOTIFY per FLUSH_INTERVAL_MS: under load every announcement would otherwise get a
    // round trip of its own (a NOTIFY takes about as long as the work between two announcements).
    // A quiet process announces at once.
    const wait = this.lastFlushAt + FLUSH_INTERVAL_MS - performance.now();
    if (wait > 0) setTimeout(run, wait).unref();
    else setImmediate(run);
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    this.lastFlushAt = performance.now();
    const origin = `${process.pid}:${this.instance}`;
    const payloads = [...this.pending].map((item) => `${origin}\u0001${item}`);
    this.pending.clear();
    try {
      await this.pool!.query('select pg_notify($1, p) from unnest($2::text[]) as p', [CHANNEL, payloads]);
    } catch (err) {
      this.log.warn({ err }, 'notify failed');
    } finally {
      this.flushing = false;
      this.scheduleFlush();
    }
  }

  on(topic: Topic, fn: (data?: string) => void): () => void {
    this.emitter.on(topic, fn);
    return () => this.emitter.off(topic, fn);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.client) {
      await this.client.query(`UNLISTEN ${CHANNEL}`).catch(() => undefined);
      this.client.release();
      this.client = null;
    }
    this.emitter.removeAllListeners();
  }
}

function splitOnce(payload: string): [string, string, string] {
  const [origin = '', topic = '', ...rest] = payload.split('\u0001');
  return [origin, topic, rest.join('\u0001')];
}
