import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchImage } from './image-fetch.js';

describe('fetchImage (SSRF guard, size limit)', () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === '/ok') { res.end(Buffer.from([0x89, 0x50, 0x4e, 0x47])); return; }
      if (req.url === '/big') { res.writeHead(200, { 'content-length': String(4 * 1024 * 1024) }); res.end(); return; }
      if (req.url === '/chunked') { res.writeHead(200); for (let i = 0; i < 5; i++) res.write(Buffer.alloc(1024 * 1024)); res.end(); return; }
      if (req.url === '/redirect') { res.writeHead(302, { location: '/ok' }); res.end(); return; }
      res.writeHead(404); res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => { server.close(); });

  const failure = async (p: Promise<unknown>) => {
    try { await p; } catch (err) { return err as { code: string; message: string }; }
    throw new Error('expected a refusal');
  };

  it('refuses private and reserved destinations unless allowed', async () => {
    expect((await failure(fetchImage(`${base}/ok`, { allowPrivate: false }))).code).toBe('invalid_request');
    expect((await failure(fetchImage('http://169.254.169.254/latest', { allowPrivate: false }))).message).toMatch(/private or reserved/);
    expect((await failure(fetchImage('http://[::1]/x', { allowPrivate: false }))).code).toBe('invalid_request');
    expect((await failure(fetchImage('http://localhost/x', { allowPrivate: false }))).code).toBe('invalid_request');
    expect((await fetchImage(`${base}/ok`, { allowPrivate: true })).length).toBe(4);
  });

  it('never reads past the limit', async () => {
    expect((await failure(fetchImage(`${base}/big`, { allowPrivate: true }))).code).toBe('media_too_large');
    expect((await failure(fetchImage(`${base}/chunked`, { allowPrivate: true }))).code).toBe('media_too_large');
  });

  it('follows redirects (each hop goes through the same checks)', async () => {
    expect((await fetchImage(`${base}/redirect`, { allowPrivate: true })).length).toBe(4);
    expect((await failure(fetchImage('ftp://example.com/a.png', { allowPrivate: true }))).code).toBe('invalid_request');
    expect((await failure(fetchImage(`${base}/missing`, { allowPrivate: true }))).message).toMatch(/404/);
  });
});
