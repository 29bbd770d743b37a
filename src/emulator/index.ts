/**
 * TikTok Business Messaging emulator: an independent implementation of TikTok's API (OAuth,
 * messaging, media, webhook registration, signed webhook pushes, messaging rules, error codes)
 * plus a control API for tests. It imports nothing from the gateway; the facts it follows are
 * in reference/tiktok-api.md.
 *
 * Mount `createEmulator(opts).plugin` anywhere (every route is relative to the mount point), or
 * run it alone with `startEmulator`.
 */
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import multipart from '@fastify/multipart';
import { pino, type Logger } from 'pino';
import { registerBusinessRoutes } from './api-business.js';
import { registerMessagingRoutes } from './api-messaging.js';
import { ControlError, registerControlRoutes } from './control.js';
import { DEFAULT_APP_SCOPES, DEFAULT_RETRY_DELAYS_MS, type EmulatorContext, type RuntimeConfig } from './context.js';
import { errorEnvelope } from './envelope.js';
import { API_PREFIX } from './http.js';
import { requestId } from './ids.js';
import { QpsLimiter } from './messaging-rules.js';
import { registerOAuthRoutes } from './oauth.js';
import { emptyStats, StateStore } from './state.js';
import { WebhookPusher } from './webhooks-push.js';

export interface EmulatorOptions {
  appId: string;
  appSecret: string;
  /** Epoch ms, default Date.now. Drives windows, token expiry, timestamps and signatures (not QPS). */
  clock?: () => number;
  accessTokenTtlS?: number;             // default 86400
  refreshTokenTtlS?: number;            // default 31536000
  authCodeTtlS?: number;                // default 600
  /** Per business, across business/message/* endpoints; default 10. */
  qps?: number;
  /** Distinct conversations a business may reply to per UTC day; default 200. */
  dailyCap?: number;
  windowHours?: number;                 // default 48
  windowQuota?: number;                 // default 10
  /** Delays between push retries on non-200 / network error; the default adds up to ~72 h. */
  webhookRetryDelaysMs?: number[];
  /** Pushes in flight at once; default 32. */
  webhookConcurrency?: number;
  /** When set, state is persisted as JSON (debounced writes) and loaded at start. */
  statePath?: string;
  logger?: Logger;
}

export interface Emulator {
  /** Registers every route relative to where it is mounted. */
  plugin: FastifyPluginAsync;
  /** Stops timers and flushes the state file. */
  close(): Promise<void>;
}

const BODY_LIMIT = 10 * 1024 * 1024;

function initialConfig(opts: EmulatorOptions): RuntimeConfig {
  return {
    echo_before_response: false,
    echo_delay_ms: 0,
    send_delay_ms: 0,
    qps: opts.qps ?? 10,
    daily_cap: opts.dailyCap ?? 200,
    window_hours: opts.windowHours ?? 48,
    window_quota: opts.windowQuota ?? 10,
    app_scopes: [...DEFAULT_APP_SCOPES],
    access_token_ttl_s: opts.accessTokenTtlS ?? 86_400,
    refresh_token_ttl_s: opts.refreshTokenTtlS ?? 31_536_000,
    auth_code_ttl_s: opts.authCodeTtlS ?? 600,
    webhook_retry_delays_ms: [...(opts.webhookRetryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS)],
    webhook_concurrency: opts.webhookConcurrency ?? 32,
    webhook_timeout_ms: 15_000,
  };
}

export function createEmulator(opts: EmulatorOptions): Emulator {
  if (!opts.appId || !opts.appSecret) throw new Error('emulator: appId and appSecret are required');
  const log = opts.logger ?? pino({ level: 'silent' });
  const clock = opts.clock ?? Date.now;
  const config = initialConfig(opts);
  const store = new StateStore(opts.statePath, log);
  const stats = emptyStats();
  const pusher = new WebhookPusher({ appId: opts.appId, appSecret: opts.appSecret, store, stats, config, clock, log });
  const ctx: EmulatorContext = {
    appId: opts.appId, appSecret: opts.appSecret, clock, log, config, store, stats, pusher, faults: new Map(), qps: new QpsLimiter(),
  };
  const pristineConfig = structuredClone(config);
  pusher.resume();

  let closed: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      pusher.close();
      await store.flush();
    })();
    return closed;
  };

  const plugin: FastifyPluginAsync = async (app: FastifyInstance) => {
    // The emulator parses JSON itself, so its answers do not depend on the host's parser, and an
    // empty JSON body counts as {} (TikTok answers such calls with a parameter error, not a 400).
    app.removeContentTypeParser('application/json');
    app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: BODY_LIMIT }, (_req, raw, done) => {
      const text = typeof raw === 'string' ? raw : raw.toString('utf8');
      if (text.trim() === '') return done(null, {});
      try {
        done(null, JSON.parse(text));
      } catch {
        const err = new Error('invalid JSON body') as Error & { statusCode: number };
        err.statusCode = 400;
        done(err, undefined);
      }
    });
    // Multipart for media/upload/, unless the host already registered it for everyone.
    if (!app.hasRequestDecorator('isMultipart')) await app.register(multipart);

    app.setErrorHandler((err: FastifyError | ControlError, req, reply) => {
      const status = err.statusCode ?? 500;
      if (req.url.includes(API_PREFIX)) {
        // TikTok answers malformed requests with HTTP 200 and a parameter error.
        const code = status === 413 ? 40002 : status < 500 ? 40002 : 50000;
        if (status >= 500) req.log.error({ err }, 'emulator: request failed');
        return reply.code(200).send(errorEnvelope(requestId(clock()), code, status < 500 ? `Invalid request: ${err.message}` : undefined));
      }
      if (status >= 500) req.log.error({ err }, 'emulator: control request failed');
      return reply.code(status).send({ error: err.message, ...(err instanceof ControlError && err.rule ? { rule: err.rule } : {}) });
    });
    app.addHook('onClose', async () => { await close(); });

    registerOAuthRoutes(app, ctx);
    registerBusinessRoutes(app, ctx);
    registerMessagingRoutes(app, ctx);
    registerControlRoutes(app, ctx, pristineConfig);
  };

  return { plugin, close };
}

export async function startEmulator(
  opts: EmulatorOptions & { port?: number; host?: string },
): Promise<{ url: string; port: number; close(): Promise<void> }> {
  const emulator = createEmulator(opts);
  const app = Fastify({
    ...(opts.logger ? { loggerInstance: opts.logger } : { logger: false }),
    // One log line per request would dominate a benchmark run; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT,
  });
  await app.register(emulator.plugin);
  const host = opts.host ?? '127.0.0.1';
  await app.listen({ port: opts.port ?? 0, host });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : (opts.port ?? 0);
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${urlHost}:${port}`,
    port,
    close: async () => {
      await app.close();
      await emulator.close();
    },
  };
}
