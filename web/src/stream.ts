import { EVENT_TYPES, type StreamEvent } from './types';

export type StreamState = 'connecting' | 'live' | 'reconnecting';

export interface StreamHandlers {
  onEvent(e: StreamEvent): void;
  onState(s: StreamState): void;
  /** Events may have been missed (no position to resume from): reload what is on screen. */
  onResync(): void;
  /** The session is gone. */
  onUnauthorized(): void;
}

const BACKOFF_MS = [500, 1000, 2000, 5000, 10_000, 20_000];

/**
 * GET /v1/stream over EventSource. The browser reconnects by itself after a drop and sends
 * `Last-Event-ID`, so the server replays what was missed. When the browser gives up (an error
 * answer), we reconnect with `?last_event_id=` and back off; if the position is unknown to the
 * server (or we never had one), the caller resynchronises from the REST API instead.
 */
export class LiveStream {
  private es: EventSource | null = null;
  private lastId: string | null = null;
  private failures = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;
  private everOpen = false;
  private state: StreamState = 'connecting';
  /** The newest event ids, to drop a replayed duplicate. */
  private recent = new Set<string>();

  constructor(private readonly h: StreamHandlers) {}

  start(): void {
    this.stopped = false;
    this.open();
    window.addEventListener('online', this.onOnline);
  }

  stop(): void {
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    if (this.timer) clearTimeout(this.timer);
    this.es?.close();
    this.es = null;
  }

  get lastEventId(): string | null { return this.lastId; }

  private onOnline = () => { if (this.es?.readyState !== EventSource.OPEN) this.reconnectNow(); };

  private setState(s: StreamState): void {
    if (s === this.state) return;
    this.state = s;
    this.h.onState(s);
  }

  private open(): void {
    const url = '/v1/stream' + (this.lastId ? `?last_event_id=${encodeURIComponent(this.lastId)}` : '');
    const resumed = this.lastId !== null;
    const es = new EventSource(url, { withCredentials: true });
    this.es = es;
    es.onopen = () => {
      this.failures = 0;
      this.setState('live');
      // Reconnected without a position (nothing received yet): the gap cannot be replayed.
      if (this.everOpen && !resumed && this.lastId === null) this.h.onResync();
      this.everOpen = true;
    };
    const handle = (m: MessageEvent<string>) => {
      if (m.lastEventId) {
        if (this.recent.has(m.lastEventId)) return;
        this.recent.add(m.lastEventId);
        if (this.recent.size > 2000) this.recent = new Set([...this.recent].slice(-1000));
        this.lastId = m.lastEventId;
      }
      try { this.h.onEvent(JSON.parse(m.data) as StreamEvent); } catch { /* not an event */ }
    };
    for (const t of EVENT_TYPES) es.addEventListener(t, handle as EventListener);
    es.onmessage = handle;
    es.onerror = () => {
      if (this.stopped) return;
      this.setState('reconnecting');
      // CONNECTING: the browser retries by itself with Last-Event-ID. CLOSED: it gave up.
      if (es.readyState === EventSource.CLOSED) void this.afterFailure();
    };
  }

  private reconnectNow(): void {
    if (this.stopped) return;
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    this.es?.close();
    this.open();
  }

  private async afterFailure(): Promise<void> {
    this.es?.close();
    this.es = null;
    this.failures++;
    // Find out why: signed out, or a resume position the server does not know.
    try {
      const probe = await fetch('/v1/events' + (this.lastId ? `?after=${encodeURIComponent(this.lastId)}&limit=1` : '?limit=1'), { credentials: 'same-origin' });
      if (probe.status === 401) { this.h.onUnauthorized(); return; }
      if (probe.status === 400 && this.lastId) {
        this.lastId = null;
        this.h.onResync();
      }
    } catch { /* offline: keep backing off */ }
    if (this.stopped) return;
    const delay = BACKOFF_MS[Math.min(this.failures - 1, BACKOFF_MS.length - 1)];
    this.timer = setTimeout(() => { this.timer = null; this.open(); }, delay);
  }
}
