import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { customerWrites } from './helpers/outbound.js';

/**
 * The id-keyed lists (accounts, conversations, a conversation's messages, contacts) walked page by
 * page: every row exactly once, in the list's order, and a cursor that is not one of ours refused.
 */
describe('cursor pagination of the id-keyed lists', () => {
  let gw: TestGateway;
  let conversation: string;

  beforeAll(async () => {
    gw = await startTestGateway();
    await gw.connect('pages_one');
    await gw.connect('pages_two');
    for (const from of ['pia', 'pol', 'pru']) await customerWrites(gw, 'pages_one', from);
    conversation = (await customerWrites(gw, 'pages_two', 'pat', 'first')).id;
    for (const text of ['second', 'third', 'fourth']) await customerWrites(gw, 'pages_two', 'pat', text);
  });
  afterAll(async () => { await gw?.close(); });

  /** Every page of `path` at `limit` per page, the ids in the order given. */
  const walk = async (path: string, limit: number): Promise<string[]> => {
    const ids: string[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 20; pages++) {
      const sep = path.includes('?') ? '&' : '?';
      const res: { status: number; body: any } = await gw.api('GET', `${path}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.data.length).toBeLessThanOrEqual(limit);
      ids.push(...res.body.data.map((r: { id: string }) => r.id));
      cursor = res.body.next_cursor;
      if (!cursor) return ids;
    }
    throw new Error(`${path}: more than 20 pages`);
  };

  const lists = [
    { path: '/v1/accounts', order: 'asc', count: 2 },
    { path: '/v1/conversations', order: 'desc', count: 4 },
    { path: '/v1/contacts', order: 'desc', count: 4 },
    { path: '/v1/conversations/:conv/messages', order: 'asc', count: 4 },
    { path: '/v1/conversations/:conv/messages?order=desc', order: 'desc', count: 4 },
  ] as const;

  it.each(lists)('$path: page by page, every row once, in order', async ({ path, order, count }) => {
    const url = path.replace(':conv', conversation);
    const all = await walk(url, 100);
    expect(all).toHaveLength(count);
    const sorted = [...all].sort();
    expect(all).toEqual(order === 'asc' ? sorted : sorted.reverse());
    for (const limit of [1, 3]) expect(await walk(url, limit)).toEqual(all);
  });

  it.each(lists)('$path: a cursor that is not ours is refused', async ({ path }) => {
    const url = path.replace(':conv', conversation);
    const sep = url.includes('?') ? '&' : '?';
    const first = await gw.api('GET', `${url}${sep}limit=1`);
    const good: string = first.body.next_cursor;
    for (const bad of ['garbage', good.slice(0, -2), Buffer.from('cv_').toString('base64url'), `${good}=`]) {
      const res = await gw.api('GET', `${url}${sep}cursor=${encodeURIComponent(bad)}`);
      expect(res.status, bad).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', details: { field: 'cursor' } });
    }
  });
});
