import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { customerWrites } from './helpers/outbound.js';

type Schema = Record<string, any>;

/**
 * Every request body the API takes is closed: a field the API does not know (a typo, `user_id` for
 * `assignee_id`) is refused, never silently dropped while the rest of the request goes through.
 * Checked on the OpenAPI document, so a new route that forgets is caught here.
 */
describe('request bodies refuse unknown fields', () => {
  let gw: TestGateway;
  beforeAll(async () => { gw = await startTestGateway(); });
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
    await gw.connect('bodies_shop');
    const conv = await customerWrites(gw, 'bodies_shop', 'bodies_buyer');
    const before = await gw.api('GET', `/v1/conversations/${conv.id}`);
    const res = await gw.api('POST', `/v1/conversations/${conv.id}/assign`, { user_id: 'usr_someone' });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'invalid_request', details: { rule: 'additionalProperties' } });
    const after = await gw.api('GET', `/v1/conversations/${conv.id}`);
    expect(after.body.assignee_id).toBe(before.body.assignee_id);
  });
});
