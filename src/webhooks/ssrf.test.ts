import { createServer } from 'node:http';
import { lookup } from 'node:dns/promises';
import { hostname } from 'node:os';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { checkWebhookUrl, guardedLookup, isPublicAddress } from './ssrf.js';
import { HttpPoster } from './http-post.js';

describe('isPublicAddress', () => {
  it.each([
    '127.0.0.1', '127.1.2.3', '10.0.0.1', '172.16.5.4', '192.168.1.1', '169.254.169.254', '100.64.0.1', '100.100.100.200',
    '0.0.0.0', '255.255.255.255', '224.0.0.1', '192.0.0.192', '198.18.0.1', '::1', '::', 'fe80::1', 'fc00::1', 'fd00:ec2::254',
    'ff02::1', '::ffff:127.0.0.1', '::ffff:10.1.2.3', '64:ff9b::a00:1', '2002:7f00:1::1', 'not-an-ip',
  ])('refuses %s', (ip) => expect(isPublicAddress(ip)).toBe(false));

  it.each(['8.8.8.8', '1.1.1.1', '93.184.216.34', '2606:4700:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808'])(
    'accepts %s', (ip) => expect(isPublicAddress(ip)).toBe(true));
});

describe('checkWebhookUrl', () => {
  const resolveTo = (...ips: string[]) => async () => ips;
  const failing = async () => { throw new Error('ENOTFOUND'); };

  it('accepts public http(s) URLs', async () => {
    expect((await checkWebhookUrl('https://hooks.example.com/x', false, resolveTo('93.184.216.34'))).ok).toBe(true);
    expect((await checkWebhookUrl('http://8.8.8.8:8080/x', false, resolveTo())).ok).toBe(true);
  });

  it('refuses other schemes and garbage', async () => {
    expect((await checkWebhookUrl('ftp://example.com/', false, resolveTo('93.184.216.34'))).ok).toBe(false);
    expect((await checkWebhookUrl('file:///etc/passwd', true)).ok).toBe(false);
    expect((await checkWebhookUrl('not a url', true)).ok).toBe(false);
  });

  it.each(['https://user:secret@hooks.example.com/x', 'https://token@hooks.example.com/x', 'http://:secret@127.0.0.1:3000/'])(
    'refuses credentials in the URL, which every answer about the endpoint would show: %s', async (url) => {
      expect(await checkWebhookUrl(url, true, resolveTo('93.184.216.34'))).toMatchObject({ ok: false, reason: expect.stringContaining('credentials') });
    });

  it.each([
    'http://127.0.0.1:3000/', 'http://[::1]/', 'http://localhost/', 'http://api.localhost/', 'http://169.254.169.254/latest/meta-data',
    'http://metadata.google.internal/', 'http://2130706433/', 'http://0x7f.1/', 'http://10.0.0.1/', 'http://[::ffff:127.0.0.1]/',
    'http://[fd00:ec2::254]/',
  ])('refuses private literal or name %s', async (url) => {
    expect((await checkWebhookUrl(url, false, resolveTo('93.184.216.34'))).ok).toBe(false);
  });

  it('refuses names that resolve to private addresses', async () => {
    const r = await checkWebhookUrl('https://rebind.example.com/', false, resolveTo('93.184.216.34', '10.0.0.7'));
    expect(r).toMatchObject({ ok: false });
  });

  it('accepts an unresolvable name (the connect-time guard still applies)', async () => {
    expect((await checkWebhookUrl('https://not-yet.example.com/', false, failing)).ok).toBe(true);
  });

  it('allows private destinations when configured', async () => {
    expect((await checkWebhookUrl('http://127.0.0.1:3000/', true)).ok).toBe(true);
  });
});

describe('connect-time guard', () => {
  it('guardedLookup refuses names resolving to loopback', async () => {
    const err = await new Promise<Error | null>((resolve) => guardedLookup('localhost', { all: true }, (e) => resolve(e)));
    expect(err?.message).toMatch(/refused/);
  });

  it('guardedLookup refuses a name that resolves to a private address (this host\'s own name)', async () => {
    const name = hostname();
    const addrs = await lookup(name, { all: true }).catch(() => []);
    if (!addrs.length || addrs.some((a) => isPublicAddress(a.address))) return; // depends on the machine's resolver
    for (const options of [{ all: true }, { family: 0 }]) {
      const err = await new Promise<Error | null>((resolve) => guardedLookup(name, options, (e) => resolve(e)));
      expect(err?.message).toMatch(/resolves to a private/);
    }
    const poster = new HttpPoster();
    const r = await poster.post(`http://${name}:9/`, '{}', {}, { timeoutMs: 2000, allowPrivate: false });
    poster.close();
    expect(r.status).toBeNull();
    expect(r.error).toMatch(/resolves to a private/);
  });

  it('HttpPoster refuses private destinations unless allowed', async () => {
    const server = createServer((_req, res) => { res.writeHead(200); res.end('ok'); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const poster = new HttpPoster();
    try {
      const literal = await poster.post(`http://127.0.0.1:${port}/`, '{}', {}, { timeoutMs: 2000, allowPrivate: false });
      expect(literal.status).toBeNull();
      expect(literal.error).toMatch(/refused/);
      const named = await poster.post(`http://localhost:${port}/`, '{}', {}, { timeoutMs: 2000, allowPrivate: false });
      expect(named.status).toBeNull();
      expect(named.error).toMatch(/refused/);
      const allowed = await poster.post(`http://127.0.0.1:${port}/`, '{}', {}, { timeoutMs: 2000, allowPrivate: true });
      expect(allowed.status).toBe(200);
      expect(allowed.body).toBe('ok');
    } finally {
      poster.close();
      server.close();
    }
  });
});
