import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import { ApiError } from '../core/errors.js';
import { hmacKey } from '../core/crypto.js';
import type { AppContext } from '../context.js';
import { verifyTiktokSignature } from '../providers/tiktok/signature.js';
import { MalformedWebhook, readEnvelope } from '../providers/tiktok/webhook-events.js';
import { InboundLog } from './inbound-log.js';

/**
 * TikTok's DM callback. Answers 200 only once the raw event is committed; everything after is
 * asynchronous. A bad, stale or missing signature is 401 and stores nothing; so is a body over the
 * size limit (413) and a body that is not JSON (400).
 */
export function tiktokWebhookRoutes(ctx: AppContext): FastifyPluginAsync {
  return async (app) => {
    const log = new InboundLog(ctx.database, (size) => {
      ctx.pressure.recordBatch(size);
      ctx.bus.notify('inbound');
    });
    let key = hmacKey(ctx.config.tiktokAppSecret || 'unset');
    let keyFor = ctx.config.tiktokAppSecret;

    app.addHook('onResponse', async (_req, reply) => { ctx.metrics.webhooksReceived.inc({ provider: 'tiktok', status: String(reply.statusCode) }); });
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: ctx.config.webhookMaxBytes }, (_req, body, done) => done(null, body));

    app.post('/webhooks/tiktok', {
      bodyLimit: ctx.config.webhookMaxBytes,
      schema: {
        tags: ['webhooks (inbound)'], security: [],
        summary: "TikTok's signed DM webhook (Tiktok-Signature: t=…,s=hex HMAC-SHA256 of \"t.body\")",
        response: { 200: Type.Object({ ok: Type.Boolean() }), 400: { $ref: 'Error#' }, 401: { $ref: 'Error#' }, 413: { $ref: 'Error#' } },
      },
    }, async (req) => {
      const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      if (keyFor !== ctx.config.tiktokAppSecret) { key = hmacKey(ctx.config.tiktokAppSecret); keyFor = ctx.config.tiktokAppSecret; }
      const header = req.headers['tiktok-signature'];
      const check = verifyTiktokSignature(Array.isArray(header) ? header[0] : header, raw, key, ctx.config.tiktokSignatureToleranceS, ctx.clock());
      if (!check.ok) throw new ApiError('unauthorized', `webhook refused: ${check.reason}`);
      const text = raw.toString('utf8');
      let meta;
      try {
        meta = readEnvelope(raw, text).meta;
      } catch (err) {
        if (err instanceof MalformedWebhook) throw new ApiError('invalid_request', err.message);
        throw err;
      }
      await log.append({ provider: 'tiktok', dedupeKey: meta.dedupeKey, eventType: meta.eventType, businessId: meta.businessId, body: text, receivedAt: ctx.clock() });
      return { ok: true };
    });
  };
}
