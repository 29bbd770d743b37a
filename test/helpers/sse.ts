import { get as httpGet, type IncomingMessage } from 'node:http';

export interface SseEvent { id: string; event: string; data: string }

/** A minimal SSE client (node:http, so closing it really closes the connection). */
export async function openStream(url: string, headers: Record<string, string>) {
  const events: SseEvent[] = [];
  const comments: string[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  let buffer = '';
  let ended = false;
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = httpGet(url, { headers }, resolve);
    req.on('error', reject);
  });
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => {
    buffer += chunk;
    let i: number;
    while ((i = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, i);
      buffer = buffer.slice(i + 2);
      const e: Partial<SseEvent> = {};
      for (const line of frame.split('\n')) {
        if (line.startsWith(':')) { comments.push(line); continue; }
        const [k, ...rest] = line.split(': ');
        if (k === 'id' || k === 'event' || k === 'data') e[k] = rest.join(': ');
      }
      if (e.id) events.push(e as SseEvent);
      waiters.filter((w) => events.length >= w.n).forEach((w) => w.resolve());
    }
  });
  const finished = new Promise<void>((resolve) => { res.on('close', () => { ended = true; resolve(); }); });
  return {
    status: res.statusCode, headers: res.headers, events, comments, finished,
    get ended() { return ended; },
    waitFor(n: number, timeoutMs = 8000): Promise<void> {
      if (events.length >= n) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`stream got ${events.length} of ${n} events`)), timeoutMs);
        waiters.push({ n, resolve: () => { clearTimeout(t); resolve(); } });
      });
    },
    async close() { res.destroy(); await finished; },
  };
}
