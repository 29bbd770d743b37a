import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';

export type RawHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** Fastify's defaults for the server it would have built itself (fastify.js defaultInitOptions). */
interface ServerOptions { keepAliveTimeout?: number; requestTimeout?: number; connectionTimeout?: number }

/**
 * The few hot paths node:http serves directly, ahead of Fastify's router, hooks and serializers:
 * the provider webhooks, where acknowledging fast is the whole job. Each is still declared as a
 * Fastify route too, for the OpenAPI document and for `app.inject`; both share one implementation.
 */
export class RawRoutes {
  private readonly routes = new Map<string, RawHandler>();
  /** Requests being answered, with their start: what a shutdown waits for. */
  private readonly answering = new Map<IncomingMessage, number>();

  /** `observe`: told each answered request's duration in seconds, as Fastify's routes are (app.ts). */
  constructor(private readonly observe: (method: string, route: string, status: number, seconds: number) => void) {}

  add(method: 'POST', path: string, handler: RawHandler): void {
    this.routes.set(`${method} ${path}`, (req, res) => {
      const started = performance.now();
      res.once('finish', () => this.observe(method, path, res.statusCode, (performance.now() - started) / 1000));
      handler(req, res);
    });
  }

  /** Fastify's `serverFactory`: exact method and path (any query string) go to a raw handler. */
  readonly serverFactory = (fastifyHandler: RawHandler, opts: ServerOptions): http.Server => {
    const server = http.createServer((req, res) => {
      this.answering.set(req, performance.now());
      res.once('close', () => this.answering.delete(req));
      const url = req.url ?? '';
      const q = url.indexOf('?');
      const handler = this.routes.size ? this.routes.get(`${req.method} ${q < 0 ? url : url.slice(0, q)}`) : undefined;
      if (handler) handler(req, res);
      else fastifyHandler(req, res);
    });
    if (opts.keepAliveTimeout) server.keepAliveTimeout = opts.keepAliveTimeout;
    if (opts.requestTimeout) server.requestTimeout = opts.requestTimeout;
    if (opts.connectionTimeout) server.setTimeout(opts.connectionTimeout);
    return server;
  };

  /** How many requests are being answered. */
  get answeringCount(): number {
    return this.answering.size;
  }

  /** The requests still being answered, oldest first (a few): method, path and age. */
  inProgress(max = 5): string {
    const now = performance.now();
    const list = [...this.answering].slice(0, max).map(([req, since]) => `${req.method} ${(req.url ?? '').split('?')[0]} for ${((now - since) / 1000).toFixed(1)} s`);
    return `${this.answering.size} request(s) in progress${list.length ? `: ${list.join(', ')}` : ''}`;
  }
}
