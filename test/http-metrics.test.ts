import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { customerWrites, reply, waitFor, waitStatus } from './helpers/outbound.js';
import { imReceiveText, postTiktokWebhook, tiktokSignature } from './helpers/tiktok.js';

/** Every request's duration, by route pattern: what an operator watches the accept path's p99 with. */
describe('request duration metrics', () => {
  let gw: TestGateway;
  beforeAll(async () => { gw = await startTestGateway(); });
  afterAll(async () => { await gw?.close(); });

  const series = async () => {
    const text = await (await fetch(`${gw.url}/metrics`)).text();
    const out = new Map<string, number>();
    for (const m of text.matchAll(/^dmgate_http_request_duration_seconds_count\{([^}]*)\} (\d+)$/gm)) out.set(m[1], Number(m[2]));
    return { text, count: (method: string, route: string, status: number) => out.get(`method="${method}",route="${route}",status="${status}"`) ?? 0 };
  };

  it('counts requests by method, route pattern and status, raw webhook route included', async () => {
    const account = await gw.connect('metrics_shop');
    const before = await series();
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
    expect((await gw.api('GET', '/v1/messages/msg_does_not_exist')).status).toBe(404);
    expect((await fetch(`${gw.url}/v1/no/such/route/42`)).status).toBe(404);
    expect((await fetch(`${gw.url}/v1/no/such/route/43`, { method: 'DELETE' })).status).toBe(404);
    const body = imReceiveText(account.external_id, { messageId: 'm_metrics_1', conversationId: 'c_metrics_1', text: 'hi' });
    expect((await postTiktokWebhook(gw.url, body)).status).toBe(401);
    expect((await postTiktokWebhook(gw.url, body, { 'tiktok-signature': tiktokSignature(body) })).status).toBe(200);

    const after = await series();
    const grew = (method: string, route: string, status: number) => after.count(method, route, status) - before.count(method, route, status);
    expect(grew('GET', '/healthz', 200)).toBe(1);
    expect(grew('GET', '/v1/messages/:id', 404)).toBe(1);
    expect(grew('GET', '/*', 404)).toBe(1); // the inbox's wildcard (it answers 404 under /v1)
    expect(grew('DELETE', 'unmatched', 404)).toBe(1);
    expect(grew('POST', '/webhooks/tiktok', 401)).toBe(1);
    expect(grew('POST', '/webhooks/tiktok', 200)).toBe(1);
    // Patterns, never URLs: an id or an unknown path would make a series per request.
    expect(after.text).not.toMatch(/route="[^"]*(msg_does_not_exist|no\/such)/);
    // Bucketed for a 20 ms target, with a sum to average from.
    expect(after.text).toMatch(/^dmgate_http_request_duration_seconds_bucket\{le="0\.02",method="GET",route="\/healthz",status="200"\} \d+$/m);
    expect(after.text).toMatch(/^dmgate_http_request_duration_seconds_sum\{method="GET",route="\/healthz",status="200"\} [0-9.e-]+$/m);
  });

  it('times every TikTok messaging call the sender makes (what paces an account below TikTok\'s 10 per second)', async () => {
    const calls = async () => {
      const text = (await series()).text;
      const n = (suffix: string) => Number(new RegExp(`^dmgate_provider_call_duration_seconds_${suffix} ([0-9.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN);
      return { count: n('count'), sum: n('sum'), inf: n('bucket\\{le="\\+Inf"\\}') };
    };
    await gw.connect('metrics_send_shop');
    const conv = await customerWrites(gw, 'metrics_send_shop', 'metrics_buyer');
    const before = await calls();
    const sent = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'timed' });
    await waitStatus(gw, sent.body.id, 'sent');
    const after = await calls();
    expect(after.count - before.count).toBeGreaterThanOrEqual(1);
    expect(after.inf).toBe(after.count);
    expect(after.sum).toBeGreaterThan(before.sum);
    expect(/^dmgate_provider_sends_total\{outcome="sent"\} ([0-9]+)$/m.exec((await series()).text)?.[1]).toBe('1');
  });

  it('reports each queue\'s depth and the age of its oldest item (what an operator alerts on)', async () => {
    const gauge = async (name: string, labels = '') => {
      const text = (await series()).text;
      const m = new RegExp(`^${name}${labels ? `\\{${labels}\\}` : ''} ([0-9.e+-]+)$`, 'm').exec(text);
      return m ? Number(m[1]) : null;
    };
    // Nothing waits yet: the ages are 0 and no reply status has a series.
    expect(await gauge('dmgate_inbound_oldest_age_seconds')).toBe(0);
    expect(await gauge('dmgate_deliveries_oldest_age_seconds')).toBe(0);
    expect(await gauge('dmgate_outbound_oldest_age_seconds', 'status="held"')).toBeNull();

    // A subscriber that is down: its deliveries wait for their retries. And one that answers.
    const endpoint = await gw.api('POST', '/v1/webhook-endpoints', { url: 'http://127.0.0.1:9/down', events: ['message.received'] });
    expect(endpoint.status).toBe(201);
    const sink = createServer((_req, res) => { res.statusCode = 204; res.end(); });
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
    const up = await gw.api('POST', '/v1/webhook-endpoints', { url: `http://127.0.0.1:${(sink.address() as AddressInfo).port}/up`, events: ['message.received'] });
    expect(up.status).toBe(201);
    await gw.connect('metrics_queue_shop');
    const conv = await customerWrites(gw, 'metrics_queue_shop', 'metrics_waiting_buyer');
    // A revoked token: the account's replies are held until it is connected again.
    await gw.control('tokens/revoke', { business: 'metrics_queue_shop' });
    const accepted = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'held for a while' });
    expect(accepted.status).toBe(202);
    await waitStatus(gw, accepted.body.id, 'held');
    const acceptedAt = Date.parse(accepted.body.created_at);
    await new Promise((r) => setTimeout(r, 50));

    const before = Date.now();
    const heldAge = await gauge('dmgate_outbound_oldest_age_seconds', 'status="held"');
    const after = Date.now();
    expect(await gauge('dmgate_outbound_queued', 'status="held"')).toBe(1);
    expect(heldAge).toBeGreaterThanOrEqual((before - acceptedAt) / 1000 - 0.001);
    expect(heldAge).toBeLessThanOrEqual((after - acceptedAt) / 1000 + 0.001);
    expect(await gauge('dmgate_deliveries_pending')).toBeGreaterThanOrEqual(1);
    expect(await gauge('dmgate_deliveries_oldest_age_seconds')).toBeGreaterThan(0);
    // The attempts behind them, counted by outcome.
    expect(await gauge('dmgate_provider_sends_total', 'outcome="held"')).toBe(1);
    await waitFor('a failed and a succeeded delivery attempt', async () => ((await gauge('dmgate_deliveries_total', 'outcome="retry"')) ?? 0) >= 1
      && ((await gauge('dmgate_deliveries_total', 'outcome="succeeded"')) ?? 0) >= 1);
    // Response times of the attempts that got an answer (the refused connection got none).
    expect(await gauge('dmgate_delivery_duration_seconds_count')).toBe(await gauge('dmgate_deliveries_total', 'outcome="succeeded"'));
    sink.close();
  });
});
