import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { customerWrites } from './helpers/outbound.js';
import { createUser } from '../src/auth/users.js';

type Schema = Record<string, any>;

/**
 * Every request body the API takes is closed: a field the API does not know (a typo, `user_id` for
 * `assignee_id`) is refused, never silently dropped while the rest of the request goes through.
 * Checked on the OpenAPI document, so a new route that forgets is caught here.
 */
describe('request bodies and query filters', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
    await gw.connect('bodies_shop');
  });
  afterAll(async () => { await gw?.close(); });

  it('every object in every request body schema sets additionalProperties: false', async () => {
    const spec = (await (await fetch(`${gw.url}/openapi.json`)).json()) as { paths: Record<string, Record<string, Schema>>; components?: { schemas?: Record<string, Schema> } };
    const components = spec.components?.schemas ?? {};
    const open: string[] = [];
    let bodies = 0;
    const walk = (s: Schema | undefined, at: string, depth = 0): void => {
      if (!s || typeof s !== 'object' || depth > 8) return;
      if (s.$ref) return walk(components[String(s.$ref).split('/').pop()!], at, depth + 1);
      if (s.properties && s.additionalProperties !== false) open.push(at);
      for (const [name, p] of Object.entries<Schema>(s.properties ?? {})) walk(p, `${at}.${name}`, depth + 1);
      if (s.items) walk(s.items, `${at}[]`, depth + 1);
      for (const k of ['anyOf', 'oneOf', 'allOf']) for (const x of s[k] ?? []) walk(x, at, depth + 1);
    };
    for (const [path, ops] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        for (const content of Object.values<Schema>(op.requestBody?.content ?? {})) {
          bodies++;
          walk(content.schema, `${method.toUpperCase()} ${path}`);
        }
      }
    }
    expect(bodies).toBeGreaterThan(10);
    expect(open).toEqual([]);
  });

  it('assigning with a misspelled field is refused and changes nothing', async () => {
    const conv = await customerWrites(gw, 'bodies_shop', 'bodies_buyer');
    const before = await gw.api('GET', `/v1/conversations/${conv.id}`);
    const res = await gw.api('POST', `/v1/conversations/${conv.id}/assign`, { user_id: 'usr_someone' });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'invalid_request', details: { rule: 'additionalProperties' } });
    const after = await gw.api('GET', `/v1/conversations/${conv.id}`);
    expect(after.body.assignee_id).toBe(before.body.assignee_id);
    expect(res.body.error).toMatchObject({ message: 'user_id is not a known field', details: { field: 'user_id' } });
  });

  it('schema errors name the field as the caller wrote it, in the message too', async () => {
    const conv = await customerWrites(gw, 'bodies_shop', 'bodies_named');
    const cases: [string, string, unknown, string][] = [
      ['POST', '/v1/messages', { conversation_id: conv.id }, 'type is required'],
      ['POST', '/v1/messages', { conversation_id: conv.id, type: 'share_post', share_post: { item_id: '' } }, 'share_post.item_id must not have fewer than 1 characters'],
      ['POST', '/v1/messages', [], 'the body must be a JSON object'],
      ['GET', '/v1/conversations?limit=0', undefined, 'limit must be >= 1'],
    ];
    for (const [method, path, body, message] of cases) {
      const res = await gw.api(method, path, body);
      expect(res.status, message).toBe(400);
      expect(res.body.error.message).toBe(message);
      expect(res.body.error.message).not.toMatch(/body\/|querystring\//);
    }
  });

  it('an empty body sent as JSON is no body: bodiless actions work, others say what is missing', async () => {
    const conv = await customerWrites(gw, 'bodies_shop', 'bodies_empty');
    const post = (path: string, headers: Record<string, string>, body?: string) =>
      fetch(`${gw.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${gw.key}`, ...headers }, body });
    const json = { 'content-type': 'application/json' };

    const resolved = await post(`/v1/conversations/${conv.id}/resolve`, json);
    expect(resolved.status).toBe(200);
    expect(((await resolved.json()) as { status: string }).status).toBe('resolved');
    expect((await post(`/v1/conversations/${conv.id}/reopen`, json, '')).status).toBe(200);
    // assign's body is optional (an API key then unassigns, a signed-in agent takes it), with the header or without.
    const agent = await createUser(gw.server.ctx.database, { email: 'bodies-agent@example.com', role: 'agent', password: 'a long password' });
    for (const headers of [json, {}]) {
      expect((await gw.api('POST', `/v1/conversations/${conv.id}/assign`, { assignee_id: agent.id })).body.assignee_id).toBe(agent.id);
      const assigned = await post(`/v1/conversations/${conv.id}/assign`, headers);
      expect(assigned.status).toBe(200);
      expect(((await assigned.json()) as { assignee_id: string | null }).assignee_id).toBeNull();
    }

    const empty = await post('/v1/messages', json);
    expect(empty.status).toBe(400);
    expect(((await empty.json()) as any).error).toMatchObject({ code: 'invalid_request', message: 'the body must be a JSON object' });
  });

  it('a body that is not JSON is refused as such, and nothing is sent', async () => {
    const conv = await customerWrites(gw, 'bodies_shop', 'bodies_plain');
    const body = JSON.stringify({ conversation_id: conv.id, type: 'text', text: 'hello' });
    for (const contentType of ['text/plain', 'application/x-www-form-urlencoded']) {
      const res = await fetch(`${gw.url}/v1/messages`, { method: 'POST', headers: { authorization: `Bearer ${gw.key}`, 'content-type': contentType }, body });
      expect(res.status, contentType).toBe(400);
      expect(((await res.json()) as any).error).toMatchObject({ code: 'invalid_request', details: { rule: 'content_type' } });
    }
    const history = await gw.api('GET', `/v1/conversations/${conv.id}/messages`);
    expect(history.body.data.filter((m: { direction: string }) => m.direction === 'outbound')).toEqual([]);
  });

  it('conversation filters refuse values that are not ids of their kind, and answer an unknown id with an empty page', async () => {
    const account = await gw.connect('bodies_filters');
    await customerWrites(gw, 'bodies_filters', 'bodies_filtered');
    for (const [q, field] of [['account_id=bodies_filters', 'account_id'], ['account_id=cv_01m95hb7pj0j7tsp1qzeq8fppv', 'account_id'],
      ['contact_id=bodies_filtered', 'contact_id'], ['assignee=mine', 'assignee'], ['assignee=acct_01m95hb7pj0j7tsp1qzeq8fppv', 'assignee']]) {
      const res = await gw.api('GET', `/v1/conversations?${q}`);
      expect(res.status, q).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', details: { field } });
    }
    expect((await gw.api('GET', `/v1/conversations?account_id=${account.id}`)).body.data).toHaveLength(1);
    expect((await gw.api('GET', '/v1/conversations?account_id=acct_01m95hb7pj0j7tsp1qzeq8fppv')).body.data).toEqual([]);
    expect((await gw.api('GET', '/v1/conversations?assignee=usr_01m95hb7pj0j7tsp1qzeq8fppv')).body.data).toEqual([]);
    expect((await gw.api('GET', '/v1/conversations?assignee=none&account_id=')).status).toBe(200);
  });

  it('a misspelt filter is refused by name instead of being ignored', async () => {
    await customerWrites(gw, 'bodies_shop', 'bodies_resolved_one');
    const res = await gw.api('GET', '/v1/conversations?statsu=resolved');
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({
      code: 'invalid_request', message: 'statsu is not a query parameter of this endpoint', details: { field: 'statsu', rule: 'additionalProperties' },
    });
    expect((await gw.api('GET', '/v1/conversations?status=resolved')).status).toBe(200);
  });

  it('every API endpoint with query parameters refuses one it does not have', async () => {
    const spec = (await (await fetch(`${gw.url}/openapi.json`)).json()) as { paths: Record<string, Record<string, Schema>> };
    const checked: string[] = [];
    const open: string[] = [];
    for (const [path, ops] of Object.entries(spec.paths)) {
      const get = ops.get;
      if (!path.startsWith('/v1/') || !get?.parameters?.some((p: Schema) => p.in === 'query')) continue;
      const url = path.replace(/\{[^}]+\}/g, 'x_01m95hb7pj0j7tsp1qzeq8fppv') + '?no_such_parameter=1';
      // Only the status and body of a refusal are read: an endpoint that took the request may be a stream.
      const res = await fetch(gw.url + url, { headers: { authorization: `Bearer ${gw.key}` }, signal: AbortSignal.timeout(5000) });
      checked.push(path);
      const field = res.status === 400 ? ((await res.json()) as { error?: { details?: { field?: string } } }).error?.details?.field : undefined;
      if (field !== 'no_such_parameter') open.push(`${path} answered ${res.status}`);
      if (res.status !== 400) await res.body?.cancel();
    }
    expect(checked.length).toBeGreaterThanOrEqual(8);
    expect(open).toEqual([]);
  });
});
