import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { newId } from '../src/core/ids.js';

/**
 * GET /v1/media/{id} serves customers' bytes from the inbox's origin, typed by TikTok's CDN: only
 * plain images and videos show inline; anything else (HTML, SVG) is a download that no browser
 * sniffs or runs script in.
 */
describe('GET /v1/media/{id} headers', () => {
  let gw: TestGateway;
  beforeAll(async () => { gw = await startTestGateway(); });
  afterAll(async () => { await gw?.close(); });

  const stored = async (contentType: string | null, body: string) => {
    const id = newId('med');
    await gw.server.ctx.database.db.insertInto('media').values({
      id, message_id: null, account_id: null, provider_media_id: null, content_type: contentType, size: body.length, data: Buffer.from(body), created_at: Date.now(),
    }).execute();
    return fetch(`${gw.url}/v1/media/${id}`, { headers: { authorization: `Bearer ${gw.key}` } });
  };

  it.each([
    ['image/png', 'image/png', 'inline'],
    ['IMAGE/JPEG; charset=binary', 'image/jpeg', 'inline'],
    ['video/mp4', 'video/mp4', 'inline'],
    ['text/html', 'application/octet-stream', 'attachment'],
    ['image/svg+xml', 'application/octet-stream', 'attachment'],
    [null, 'application/octet-stream', 'attachment'],
  ])('stored as %s: served as %s, %s', async (storedType, servedType, disposition) => {
    const res = await stored(storedType, '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(servedType);
    expect(res.headers.get('content-disposition')).toBe(disposition);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-security-policy')).toMatch(/default-src 'none'; sandbox/);
    expect(await res.text()).toContain('onload');
  });
});
