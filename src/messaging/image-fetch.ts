import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { ApiError } from '../core/errors.js';
import { guardedLookup, isPublicAddress, urlHost } from '../webhooks/ssrf.js';
import { IMAGE_MAX_BYTES, tooLarge } from './content.js';

export interface FetchImageOptions {
  /** Allow loopback and private destinations (sandbox and tests). */
  allowPrivate: boolean;
  timeoutMs?: number;
  maxBytes?: number;
  maxRedirects?: number;
}

const refuse = (message: string, details: Record<string, unknown> = {}) => new ApiError('invalid_request', message, { field: 'image.url', ...details });

/**
 * Downloads an image a caller named by URL, the way an SSRF-safe fetcher must: http(s) only, no
 * private or reserved destination (checked for literal addresses here and for every DNS answer at
 * connect time, so rebinding does not help), redirects followed only a few times and re-checked,
 * and never more than the size limit read: a larger image is `media_too_large` without reading it.
 */
export async function fetchImage(rawUrl: string, opts: FetchImageOptions): Promise<Buffer> {
  const maxBytes = opts.maxBytes ?? IMAGE_MAX_BYTES;
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw refuse('image.url must be an absolute http(s) URL');
  }
  for (let hop = 0; hop <= (opts.maxRedirects ?? 3); hop++) {
    const res = await getOnce(url, opts, maxBytes);
    if ('redirect' in res) {
      try {
        url = new URL(res.redirect, url);
      } catch {
        throw refuse('the image URL redirected to an invalid location');
      }
      continue;
    }
    return res.bytes;
  }
  throw refuse('the image URL redirected too many times');
}

function getOnce(url: URL, opts: FetchImageOptions, maxBytes: number): Promise<{ bytes: Buffer } | { redirect: string }> {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return Promise.reject(refuse('image.url must use http or https'));
  const host = urlHost(url);
  if (!opts.allowPrivate && isIP(host) && !isPublicAddress(host)) {
    return Promise.reject(refuse(`image.url points at a private or reserved address (${host})`));
  }
  const isHttps = url.protocol === 'https:';
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (err: ApiError) => { if (!settled) { settled = true; clearTimeout(timer); req.destroy(); reject(err); } };
    const req = (isHttps ? https : http).get(url, {
      headers: { accept: 'image/png, image/jpeg, */*;q=0.5', 'user-agent': 'dmgate' },
      ...(opts.allowPrivate ? {} : { lookup: guardedLookup as never }),
    }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        settled = true;
        clearTimeout(timer);
        resolve({ redirect: res.headers.location });
        return;
      }
      if (status !== 200) {
        res.resume();
        fail(refuse(`fetching the image answered HTTP ${status}`, { status }));
        return;
      }
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > maxBytes) {
        res.destroy();
        fail(tooLarge(declared));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) { res.destroy(); fail(tooLarge(size)); return; }
        chunks.push(c);
      });
      res.on('end', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve({ bytes: Buffer.concat(chunks) });
      });
      res.on('error', (err) => fail(refuse(`reading the image failed: ${err.message}`)));
    });
    const timer = setTimeout(() => fail(refuse(`fetching the image timed out after ${opts.timeoutMs ?? 10000} ms`)), opts.timeoutMs ?? 10000);
    req.on('error', (err: Error & { code?: string }) => {
      fail(refuse(err.code === 'EUNSAFEADDRESS' ? err.message : `fetching the image failed: ${err.code ?? err.message}`));
    });
  });
}
