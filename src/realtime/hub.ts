import type { ServerResponse } from 'node:http';
import type { AppContext } from '../context.js';
import { chunks } from '../core/chunks.js';

/**
 * Server-Sent Events fan-out. One reader per process follows the events table (woken by bus
 * 'events', which rides LISTEN/NOTIFY on Postgres so events appended by other processes arrive
 * too) and writes each new event to every connected client: one database read per wake-up,
 * whatever the number of clients.
 *
 * On Postgres, sequence numbers are taken at insert but become visible at commit, so a lower seq
 * can appear after a higher one. Missing numbers are remembered for a short grace period and
 * fetched when they show up; a number that never shows up (a rolled-back insert) is dropped.
 */
export interface EventRow { seq: number; id: string; type: string; payload: string }

export interface SseClient {
  res: ServerResponse;
  types: Set<string> | null;
  /** Events with seq above this go to the client once it is live. */
  pos: number;
  live: boolean;
}

const PAGE = 500;
const GAP_GRACE_MS = 3000;
const MAX_GAPS = 10_000;
const HEARTBEAT_MS = 15_000;
const MAX_BUFFERED = 4 * 1024 * 1024;

export function formatEvent(e: EventRow): string {
  return `id: ${e.id}\nevent: ${e.type}\ndata: ${e.payload}\n\n`;
}

export class SseHub {
  private readonly clients = new Set<SseClient>();
  /** Every open stream response, including ones still replaying: close() ends them all. */
  private readonly open = new Set<ServerResponse>();
  /** Highest seq read from the table; -1 until the first client starts the reader. */
  private readMax = -1;
  private readonly gaps = new Map<number, number>(); // seq -> first noticed (ms)
  private pumping: Promise<void> | null = null;
  private again = false;
  private gapTimer: NodeJS.Timeout | null = null;
  private readonly heartbeat: NodeJS.Timeout;
  private readonly unsubscribe: () => void;
  private closed = false;
  /** Bumped whenever the reader restarts, so a read begun before cannot move readMax back. */
  private epoch = 0;

  constructor(private readonly ctx: AppContext, heartbeatMs = HEARTBEAT_MS) {
    this.unsubscribe = ctx.bus.on('events', () => this.pump());
    this.heartbeat = setInterval(() => this.broadcastRaw(': ping\n\n'), heartbeatMs);
    this.heartbeat.unref();
  }

  get size(): number { return this.clients.size; }

  /** Registers an open stream so close() ends it; returns false when the hub is already closed. */
  track(res: ServerResponse): boolean {
    if (this.closed) return false;
    this.open.add(res);
    res.on('close', () => this.open.delete(res));
    return true;
  }

  /**
   * Registers a client: replays every event after `afterSeq` (null: from now), then switches it
   * to live fan-out without a gap or a duplicate.
   */
  async add(client: Omit<SseClient, 'pos' | 'live'>, afterSeq: number | null): Promise<SseClient | null> {
    if (this.closed) return null;
    if (this.readMax < 0) await this.startReader();
    if (this.closed || client.res.destroyed || client.res.writableEnded) return null;
    const c: SseClient = { ...client, pos: afterSeq ?? this.readMax, live: false };
    this.clients.add(c);
    try {
      for (;;) {
        const rows = await this.read(c.pos, PAGE);
        if (!this.clients.has(c)) return null; // disconnected while replaying
        for (const r of rows) this.write(c, r);
        if (rows.length) c.pos = rows[rows.length - 1].seq;
        // Live once the replay has reached everything the reader already handled (no await below).
        if (rows.length < PAGE && c.pos >= this.readMax) break;
      }
      c.live = true;
      return c;
    } catch (err) {
      this.remove(c);
      throw err;
    }
  }

  remove(client: SseClient): void {
    this.clients.delete(client);
    if (!this.clients.size) {
      this.readMax = -1; // idle: restart from the then-current end on the next connect
      this.gaps.clear();
      this.epoch++;
    }
  }

  /** Ends every stream (app shutdown). */
  close(): void {
    this.closed = true;
    this.unsubscribe();
    clearInterval(this.heartbeat);
    if (this.gapTimer) clearTimeout(this.gapTimer);
    for (const res of new Set([...this.open, ...[...this.clients].map((c) => c.res)])) {
      res.end();
      res.socket?.destroySoon(); // an SSE connection is not reused: do not let it hold the server's close
    }
    this.open.clear();
    this.clients.clear();
  }

  private async startReader(): Promise<void> {
    const row = await this.ctx.database.db.selectFrom('events').select((eb) => eb.fn.max('seq').as('max')).executeTakeFirst();
    if (this.readMax < 0) this.readMax = Number(row?.max ?? 0);
  }

  private read(afterSeq: number, limit: number): Promise<EventRow[]> {
    return this.ctx.database.db.selectFrom('events').select(['seq', 'id', 'type', 'payload'])
      .where('seq', '>', afterSeq).orderBy('seq').limit(limit).execute();
  }

  /** Reads what is new and fans it out; coalesces concurrent wake-ups into one more read. */
  pump(): void {
    if (this.closed || this.readMax < 0) return;
    if (this.pumping) { this.again = true; return; }
    this.pumping = (async () => {
      try {
        do {
          this.again = false;
          await this.readOnce();
        } while (this.again && !this.closed && this.readMax >= 0);
      } catch (err) {
        this.ctx.log.warn({ err }, 'realtime fan-out read failed');
      } finally {
        this.pumping = null;
      }
    })();
  }

  private async readOnce(): Promise<void> {
    const epoch = this.epoch;
    for (;;) {
      const from = this.readMax;
      const rows = await this.read(from, PAGE);
      if (epoch !== this.epoch || this.readMax < 0) return; // went idle meanwhile
      let expect = from + 1;
      for (const r of rows) {
        for (; expect < r.seq && this.gaps.size < MAX_GAPS; expect++) this.gaps.set(expect, this.ctx.clock());
        expect = r.seq + 1;
        this.fanOut(r);
      }
      if (rows.length) this.readMax = rows[rows.length - 1].seq;
      if (rows.length < PAGE) break;
    }
    if (this.gaps.size) await this.fillGaps(epoch);
  }

  private async fillGaps(epoch: number): Promise<void> {
    const now = this.ctx.clock();
    const wanted = [...this.gaps.keys()];
    for (const part of chunks(wanted)) {
      const rows = await this.ctx.database.db.selectFrom('events').select(['seq', 'id', 'type', 'payload'])
        .where('seq', 'in', part).orderBy('seq').execute();
      if (epoch !== this.epoch) return;
      for (const r of rows) {
        if (this.gaps.delete(r.seq)) this.fanOut(r);
      }
    }
    for (const [seq, since] of this.gaps) if (now - since > GAP_GRACE_MS) this.gaps.delete(seq);
    if (this.gaps.size && !this.gapTimer && !this.closed) {
      this.gapTimer = setTimeout(() => { this.gapTimer = null; this.pump(); }, 500);
      this.gapTimer.unref();
    }
  }

  private fanOut(r: EventRow): void {
    let frame: string | null = null;
    for (const c of this.clients) {
      if (!c.live || r.seq <= c.pos) continue;
      if (c.types && !c.types.has(r.type)) continue;
      frame ??= formatEvent(r);
      this.send(c, frame);
    }
  }

  private write(c: SseClient, r: EventRow): void {
    if (c.types && !c.types.has(r.type)) return;
    this.send(c, formatEvent(r));
  }

  private send(c: SseClient, frame: string): void {
    if (c.res.writableEnded || c.res.destroyed) { this.remove(c); return; }
    if (c.res.writableLength > MAX_BUFFERED) {
      // A client that does not read: drop it; it resumes with Last-Event-ID.
      this.remove(c);
      c.res.destroy();
      return;
    }
    c.res.write(frame);
  }

  private broadcastRaw(text: string): void {
    for (const c of this.clients) this.send(c, text);
  }
}
