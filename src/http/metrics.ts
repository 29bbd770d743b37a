import type { FastifyPluginAsync } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AppContext } from '../context.js';
import { inboundPending } from '../ingest/inbound-log.js';
import { isPending } from '../messaging/queue.js';
import { deliveryActive, deliveryFailed } from '../webhooks/delivery-status.js';

/**
 * Prometheus metrics. Counters are bumped where things happen; queue depths are read from the
 * database at scrape time, so every process of a cluster reports the same truth.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly webhooksReceived = new Counter({ name: 'dmgate_provider_webhooks_total', help: 'Provider webhooks answered, by provider and HTTP status', labelNames: ['provider', 'status'], registers: [this.registry] });
  readonly deliveries = new Counter({
    name: 'dmgate_deliveries_total', labelNames: ['outcome'], registers: [this.registry],
    help: 'Webhook delivery attempts, by outcome: succeeded, retry (scheduled again), failed (dead-lettered)',
  });
  readonly deliveryLatency = new Histogram({ name: 'dmgate_delivery_duration_seconds', help: 'Subscriber response time (attempts that got an answer)', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15], registers: [this.registry] });
  readonly acceptWrites = new Counter({
    name: 'dmgate_accept_writes_total', labelNames: ['path'], registers: [this.registry],
    help: 'Accepted replies by how they were written: batched (Postgres, with the replies accepted together), locking (Postgres, a transaction of their own: images, and what a batch could not settle), group_commit (SQLite)',
  });
  readonly sends = new Counter({
    name: 'dmgate_provider_sends_total', labelNames: ['outcome'], registers: [this.registry],
    help: 'Send attempts of replies, by outcome: sent (TikTok took it), retry (scheduled again), failed (for good), held (the account cannot send)',
  });
  /**
   * TikTok messaging calls (send, media upload, capabilities, conversation reads) from the request
   * to its answer. An account's calls count against TikTok's 10 per second until a second after
   * their answer, so its send rate is about 10 / (1 s + this): the figure that explains a rate
   * below TikTok's limit.
   */
  readonly providerCalls = new Histogram({
    name: 'dmgate_provider_call_duration_seconds', help: 'TikTok messaging calls (send, upload, capabilities, reads), from the request to its answer',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [this.registry],
  });
  /**
   * Labelled by route pattern (`/v1/messages/:id`), never by URL, so the series stay few; requests
   * no route matched share `unmatched`. Fine buckets up to 50 ms: the accept path's target is a
   * p99 of 20 ms.
   */
  readonly httpDuration = new Histogram({
    name: 'dmgate_http_request_duration_seconds', help: 'Time from a request\'s headers to the end of its answer, by method, route and status',
    labelNames: ['method', 'route', 'status'], buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  constructor(ctx: AppContext) {
    collectDefaultMetrics({ register: this.registry, prefix: 'dmgate_' });
    const db = ctx.database.db;
    const registers = [this.registry];
    const ageSeconds = (oldest: unknown) => (oldest === null || oldest === undefined ? 0 : Math.max(0, (ctx.clock() - Number(oldest)) / 1000));

    const inbound = shared(() => db.selectFrom('inbound_events').select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.min('received_at').as('oldest')])
      .where(inboundPending()).executeTakeFirst());
    new Gauge({
      name: 'dmgate_inbound_backlog', help: 'Stored provider webhooks not yet processed', registers,
      async collect() { this.set(Number((await inbound())?.n ?? 0)); },
    });
    new Gauge({
      name: 'dmgate_inbound_oldest_age_seconds', help: 'Age of the oldest stored provider webhook not yet processed (0 when none)', registers,
      async collect() { this.set(ageSeconds((await inbound())?.oldest)); },
    });

    const deliveries = shared(() => db.selectFrom('deliveries').select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.min('created_at').as('oldest')])
      .where(deliveryActive()).executeTakeFirst());
    new Gauge({
      name: 'dmgate_deliveries_pending', help: 'Webhook deliveries waiting or in flight', registers,
      async collect() { this.set(Number((await deliveries())?.n ?? 0)); },
    });
    new Gauge({
      name: 'dmgate_deliveries_oldest_age_seconds', help: 'Age of the oldest webhook delivery waiting or in flight (0 when none)', registers,
      async collect() { this.set(ageSeconds((await deliveries())?.oldest)); },
    });
    new Gauge({
      name: 'dmgate_deliveries_dead_lettered', help: 'Webhook deliveries that exhausted their retries', registers,
      async collect() { this.set(Number((await db.selectFrom('deliveries').select((eb) => eb.fn.countAll<number>().as('n')).where(deliveryFailed()).executeTakeFirst())?.n ?? 0)); },
    });

    const outbound = shared(() => db.selectFrom('messages').select((eb) => ['status', eb.fn.countAll<number>().as('n'), eb.fn.min('created_at').as('oldest')])
      .where(isPending()).groupBy('status').execute());
    new Gauge({
      name: 'dmgate_outbound_queued', help: 'Replies queued, being sent or held, by status', labelNames: ['status'], registers,
      async collect() {
        const rows = await outbound();
        this.reset();
        for (const r of rows) this.set({ status: r.status }, Number(r.n));
      },
    });
    new Gauge({
      name: 'dmgate_outbound_oldest_age_seconds', labelNames: ['status'], registers,
      help: 'Age of the oldest reply queued, being sent or held, by status, since it was accepted (no series for a status with none)',
      async collect() {
        const rows = await outbound();
        this.reset();
        for (const r of rows) this.set({ status: r.status }, ageSeconds(r.oldest));
      },
    });

    new Gauge({
      name: 'dmgate_accounts', help: 'Connected accounts by status', labelNames: ['status'], registers,
      async collect() {
        const rows = await db.selectFrom('accounts').select(['status', (eb) => eb.fn.countAll<number>().as('n')]).groupBy('status').execute();
        this.reset();
        for (const r of rows) this.set({ status: r.status }, Number(r.n));
      },
    });
  }
}

/**
 * One read per scrape for gauges over the same rows: the registry collects every metric at once,
 * so a call made while the read runs shares it.
 */
function shared<T>(read: () => Promise<T>): () => Promise<T> {
  let running: Promise<T> | null = null;
  return () => (running ??= read().finally(() => { running = null; }));
}

export function metricsRoutes(metrics: Metrics): FastifyPluginAsync {
  return async (app) => {
    app.get('/metrics', { schema: { tags: ['system'], security: [], summary: 'Prometheus metrics' } }, async (_req, reply) =>
      reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  };
}
