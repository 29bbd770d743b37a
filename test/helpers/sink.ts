import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SinkRequest { path: string; headers: IncomingHttpHeaders; body: string; at: number }
export type SinkResponder = (req: SinkRequest, index: number) => { status: number; headers?: Record<string, string>; hang?: boolean; delayMs?: number; body?: string | Buffer };

/** A subscriber endpoint on loopback that records every request; its answers are programmable. */
export class Sink {
  readonly requests: SinkRequest[] = [];
  private server: Server | null = null;
  private readonly waiters: { n: number; resolve: () => void }[] = [];
  private readonly hung = new Set<import('node:http').ServerResponse>();
  url = '';

  constructor(public respond: SinkResponder = () => ({ status: 200 })) {}

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const entry = { path: req.url ?? '/', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() };
        const index = this.requests.push(entry) - 1;
        const answer = this.respond(entry, index);
        this.waiters.filter((w) => this.requests.length >= w.n).forEach((w) => w.resolve());
        if (answer.hang) { this.hung.add(res); return; }
        const send = () => { res.writeHead(answer.status, answer.headers ?? {}); res.end(answer.body ?? 'ok'); };
        if (answer.delayMs) setTimeout(send, answer.delayMs); else send();
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** Resolves once at least n requests arrived (rejects after timeoutMs). */
  waitFor(n: number, timeoutMs = 10000): Promise<void> {
    if (this.requests.length >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`sink got ${this.requests.length} of ${n} requests`)), timeoutMs);
      this.waiters.push({ n, resolve: () => { clearTimeout(timer); resolve(); } });
    });
  }

  json<T = Record<string, unknown>>(i: number): T { return JSON.parse(this.requests[i].body) as T; }

  async close(): Promise<void> {
    for (const res of this.hung) res.destroy();
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

export async function startSink(respond?: SinkResponder): Promise<Sink> {
  return new Sink(respond).start();
}
