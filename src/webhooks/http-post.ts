import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { guardedLookup, isPublicAddress, urlHost } from './ssrf.js';

export interface PostResult {
  /** HTTP status, or null when no response arrived (connect error, timeout, refused address). */
  status: number | null;
  headers: http.IncomingHttpHeaders;
  /** The first 1 KB of the response body. */
  body: string;
  error: string | null;
  latencyMs: number;
}

export interface PostOptions {
  timeoutMs: number;
  allowPrivate: boolean;
  signal?: AbortSignal;
}

const BODY_KEEP = 1024;
const BODY_READ_MAX = 64 * 1024;

/** Keep-alive agents shared by every delivery (connections to busy endpoints are reused). */
export class HttpPoster {
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, scheduling: 'lifo' });
  private readonly httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, scheduling: 'lifo' });

  /**
   * POSTs a body and never throws: redirects are not followed, the whole exchange (connect, answer,
   * body) must fit in `timeoutMs`, and private destinations are refused unless allowed (literal IPs
   * here, names in the connect-time lookup).
   */
  post(rawUrl: string, body: string, headers: Record<string, string>, opts: PostOptions): Promise<PostResult> {
    const started = performance.now();
    const done = (r: Omit<PostResult, 'latencyMs'>): PostResult => ({ ...r, latencyMs: Math.round(performance.now() - started) });
    let url: URL;
    try {
      url = new URL(rawUrl);
    } catch {
      return Promise.resolve(done({ status: null, headers: {}, body: '', error: 'invalid url' }));
    }
    const host = urlHost(url);
    if (!opts.allowPrivate && isIP(host) && !isPublicAddress(host)) {
      return Promise.resolve(done({ status: null, headers: {}, body: '', error: `refused to connect to ${host}: private or reserved address` }));
    }
    const isHttps = url.protocol === 'https:';
    const payload = Buffer.from(body, 'utf8');
    return new Promise<PostResult>((resolve) => {
      let settled = false;
      let status: number | null = null;
      let resHeaders: http.IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      let kept = 0;
      let read = 0;
      const finish = (error: string | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        // The body is kept as text in the attempt's record: a U+0000 (a binary or compressed answer)
        // would make PostgreSQL refuse the record, and the delivery with it.
        resolve(done({ status, headers: resHeaders, body: Buffer.concat(chunks).toString('utf8').replaceAll('\u0000', '\uFFFD'), error }));
      };
      const req = (isHttps ? https : http).request(url, {
        method: 'POST',
        agent: isHttps ? this.httpsAgent : this.httpAgent,
        headers: { 'content-type': 'application/json', 'user-agent': 'dmgate', ...headers, 'content-length': String(payload.length) },
        ...(opts.allowPrivate ? {} : { lookup: guardedLookup as never }),
      }, (res) => {
        status = res.statusCode ?? null;
        resHeaders = res.headers;
        res.on('data', (c: Buffer) => {
          read += c.length;
          if (kept < BODY_KEEP) {
            const part = c.subarray(0, BODY_KEEP - kept);
            chunks.push(part);
            kept += part.length;
          }
          if (read > BODY_READ_MAX) { finish(null); res.destroy(); }
        });
        res.on('end', () => finish(null));
        res.on('error', (err) => finish(status === null ? err.message : null));
        res.on('close', () => finish(null));
      });
      const timer = setTimeout(() => {
        const msg = `timed out after ${opts.timeoutMs} ms`;
        if (status === null) finish(msg); else finish(null);
        req.destroy(new Error(msg));
      }, opts.timeoutMs);
      const onAbort = () => { finish(status === null ? 'aborted' : null); req.destroy(new Error('aborted')); };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', (err) => finish(describe(err)));
      req.end(payload);
    });
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}

function describe(err: Error & { code?: string }): string {
  if (err.code === 'EUNSAFEADDRESS') return err.message;
  return err.code ? `${err.code}: ${err.message}` : err.message;
}
