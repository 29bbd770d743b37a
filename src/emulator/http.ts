/**
 * HTTP plumbing shared by the route modules: TikTok's envelope wrapper (trailing-slash check,
 * call counting, fault injection, error mapping), query/body access and the external base URL.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { EmulatorContext } from './context.js';
import { errorEnvelope, okEnvelope, TikTokError, type Envelope } from './envelope.js';
import { requestId } from './ids.js';
import { RuleViolation } from './messaging-rules.js';

export const API_PREFIX = '/open_api/v1.3/';

/**
 * Query parameters parsed from the raw URL with URLSearchParams, independent of whatever query
 * parser the host application configured. Like TikTok, this turns a raw "+" into a space, which
 * is exactly why an unencoded conversation id then fails ("Param conversation_id is invalid.").
 */
export function query(req: FastifyRequest): URLSearchParams {
  const i = req.url.indexOf('?');
  return new URLSearchParams(i < 0 ? '' : req.url.slice(i + 1));
}

export function body(req: FastifyRequest): Record<string, unknown> {
  const b = req.body;
  return b !== null && typeof b === 'object' && !Array.isArray(b) ? (b as Record<string, unknown>) : {};
}

export function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/**
 * The emulator's base URL as the caller sees it: protocol + Host header + the prefix the plugin
 * is mounted at, so generated URLs (download_url, profile images) work under /sandbox/tiktok too.
 */
export function externalBase(app: FastifyInstance, req: FastifyRequest): string {
  const prefix = app.prefix.endsWith('/') ? app.prefix.slice(0, -1) : app.prefix;
  return `${req.protocol}://${req.host}${prefix}`;
}

/**
 * Runs `fn` once the response has been written (the echo webhook after send/), or at once when the
 * caller has hung up: TikTok's echo goes all the same when a client stopped waiting for the answer.
 * (Fastify runs no onResponse hook for a request whose caller went away.)
 */
export function runAfterResponse(reply: FastifyReply, fn: () => void): void {
  if (reply.raw.destroyed) setImmediate(fn);
  else reply.raw.once('close', fn);
}

export type TikTokHandler = (req: FastifyRequest, reply: FastifyReply) => Promise<Record<string, unknown>>;

/** Normalises "/open_api/v1.3/business/message/send", "business/message/send" … to "business/message/send/". */
export function normalizeEndpoint(endpoint: string): string {
  let e = endpoint.trim().replace(/^\/+/, '');
  if (e.startsWith('open_api/v1.3/')) e = e.slice('open_api/v1.3/'.length);
  return e.endsWith('/') ? e : `${e}/`;
}

/**
 * Registers one TikTok API route. Every answer is HTTP 200 with {code, message, request_id, data};
 * data is {} on errors. A path without its trailing slash is a 404 (Fastify does not match it;
 * the explicit check covers hosts that set ignoreTrailingSlash).
 */
export function tiktokRoute(app: FastifyInstance, ctx: EmulatorContext, method: 'GET' | 'POST', endpoint: string, handler: TikTokHandler): void {
  app.route({
    method,
    url: `${API_PREFIX}${endpoint}`,
    handler: async (req, reply) => {
      if (!req.url.split('?', 1)[0]!.endsWith('/')) return reply.callNotFound();
      const rid = requestId(ctx.clock());
      void reply.header('x-tt-logid', rid);
      ctx.stats.calls[endpoint] = (ctx.stats.calls[endpoint] ?? 0) + 1;
      const fault = ctx.faults.get(endpoint);
      if (fault && fault.remaining > 0) {
        fault.remaining--;
        if (fault.remaining === 0) ctx.faults.delete(endpoint);
        return errorEnvelope(rid, fault.code, fault.message);
      }
      let env: Envelope;
      try {
        env = okEnvelope(rid, await handler(req, reply));
      } catch (err) {
        env = toEnvelope(ctx, req, rid, err);
      }
      ctx.store.changed();
      return env;
    },
  });
}

export function toEnvelope(ctx: EmulatorContext, req: FastifyRequest, rid: string, err: unknown): Envelope {
  if (err instanceof RuleViolation) ctx.stats.violations[err.rule]++;
  if (err instanceof TikTokError) return errorEnvelope(rid, err.code, err.message);
  req.log.error({ err }, 'emulator: unexpected error');
  return errorEnvelope(rid, 50000);
}
