import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import { ApiError, databaseUnavailableError, errorBody } from '../core/errors.js';
import { hmacKey } from '../core/crypto.js';
import { newId } from '../core/ids.js';
import type { AppContext } from '../context.js';
import { databaseUnavailable } from '../db/database.js';
import type { RawRoutes } from '../http/raw-routes.js';
import { verifyTiktokSignature } from '../providers/tiktok/signature.js';
import { MalformedWebhook, readEnvelope } from '../providers/tiktok/webhook-events.js';
import { InboundLog } from './inbound-log.js';

export const TIKTOK_WEBHOOK_PATH = '/webhooks/tiktok';

const OK_BODY = '{"ok":true}';

const signatureOf = (headers: IncomingMessage['headers']): string | undefined => {
  const h = headers['tiktok-signature'];
  return Array.isArray(h) ? h[0] : h;
};

/**
 * TikTok's DM callback. Answers 200 only once the raw event is committed; everything after is
 * asynchronous. A bad, stale or missing signature is 401 and stores nothing; so is a body over the
 * size limit (413) and a body that is not JSON (400).
 */
export class TiktokWebhookIngress {
  private readonly log: InboundLog;
  private key;
  private keyFor: string;
  private readonly ok;

  constructor(private readonly ctx: AppContext) {
    this.log = new InboundLog(ctx.database, (size) => {
      ctx.pressure.recordBatch(size);
      ctx.bus.notify('inbound');
    });
    this.keyFor = ctx.config.tiktokAppSecret;
    this.key = hmacKey(this.keyFor || 'unset');
    this.ok = ctx.metrics.webhooksReceived.labels({ provider: 'tiktok', status: '200' });
  }

  /** Verifies and durably stores one webhook; throws ApiError (401 signature, 400 not JSON). */
  async accept(raw: Buffer, signature: string | undefined): Promise<void> {
    const ctx = this.ctx;
    // Sandbox mode fills the app secret in after start.
    if (this.keyFor !== ctx.config.tiktokAppSecret) { this.keyFor = ctx.config.tiktokAppSecret; this.key = hmacKey(this.keyFor); }
    const check = verifyTiktokSignature(signature, raw, this.key, ctx.config.tiktokSignatureToleranceS, ctx.clock());
    if (!check.ok) throw new ApiError('unauthorized', `webhook refused: ${check.reason}`);
    const text = raw.toString('utf8');
    let meta;
    try {
      meta = readEnvelope(raw, text).meta;
    } catch (err) {
      if (err instanceof MalformedWebhook) throw new ApiError('invalid_request', err.message);
      throw err;
    }
    if (meta.eventType === 'im_send_msg' && meta.businessId && meta.providerMessageId) {
      // The echo of a reply whose send is recorded (or is being recorded, and then was) carries nothing new.
      const recorded = ctx.recentSends.recorded(meta.businessId, meta.providerMessageId);
      if (recorded === true || (recorded !== false && (await recorded))) return;
    }
    await this.log.append({ provider: 'tiktok', dedupeKey: meta.dedupeKey, eventType: meta.eventType, businessId: meta.businessId, body: text, receivedAt: ctx.clock() });
  }

  count(status: number): void {
    if (status === 200) this.ok.inc();
    else this.ctx.metrics.webhooksReceived.inc({ provider: 'tiktok', status: String(status) });
  }

  /**
   * The same endpoint on node:http directly (see RawRoutes): TikTok waits on this answer, and
   * Fastify's routing, hooks and serialization cost more than the signature check does.
   */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const limit = this.ctx.config.webhookMaxBytes;
    const signature = signatureOf(req.headers);
    if (Number(req.headers['content-length']) > limit) {
      this.refuse(req, res, new ApiError('payload_too_large', 'the request body is too large'));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        this.refuse(req, res, new ApiError('payload_too_large', 'the request body is too large'));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (over) return;
      const raw = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size);
      this.accept(raw, signature).then(() => {
        this.count(200);
        res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': OK_BODY.length });
        res.end(OK_BODY);
      }, (err: unknown) => this.refuse(req, res, err));
    });
    req.on('error', () => { over = true; }); // the client went away: nothing was acknowledged
  };

  private refuse(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    const apiErr = err instanceof ApiError ? err : databaseUnavailable(err) ? databaseUnavailableError() : new ApiError('internal_error', 'internal error');
    const requestId = newId('req');
    if (apiErr.status >= 500) this.ctx.log.error({ err, req_id: requestId, url: req.url }, 'request failed');
    this.count(apiErr.status);
    if (res.headersSent) return;
    const body = JSON.stringify(errorBody(apiErr, requestId));
    // A refused upload still streaming in is not read to its end: close the connection after answering.
    const closing = !req.complete;
    res.writeHead(apiErr.status, {
      ...apiErr.headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body),
      ...(closing ? { connection: 'close' } : {}),
    });
    res.end(body);
    if (closing) req.resume();
  }
}

export function tiktokWebhookRoutes(ctx: AppContext, raw: RawRoutes): FastifyPluginAsync {
  return async (app) => {
    const ingress = new TiktokWebhookIngress(ctx);
    raw.add('POST', TIKTOK_WEBHOOK_PATH, ingress.handle);

    // Served by `ingress.handle` on the server; declared here for the OpenAPI document and inject().
    app.addHook('onResponse', async (_req, reply) => { ingress.count(reply.statusCode); });
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: ctx.config.webhookMaxBytes }, (_req, body, done) => done(null, body));
    app.post(TIKTOK_WEBHOOK_PATH, {
      bodyLimit: ctx.config.webhookMaxBytes,
      schema: {
        tags: ['webhooks (inbound)'], security: [],
        summary: "TikTok's signed DM webhook (Tiktok-Signature: t=…,s=hex HMAC-SHA256 of \"t.body\")",
        response: { 200: Type.Object({ ok: Type.Boolean() }), 400: { $ref: 'Error#' }, 401: { $ref: 'Error#' }, 413: { $ref: 'Error#' }, 503: { $ref: 'Error#' } },
      },
    }, async (req) => {
      await ingress.accept(Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0), signatureOf(req.headers));
      return { ok: true };
    });
  };
}
