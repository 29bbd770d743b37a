/**
 * Helpers for the emulator's own tests (and handy for anyone driving the emulator by hand): a
 * tiny node:http webhook sink, a TikTok API caller, and a one-call OAuth connect. Deliberately
 * free of test-framework imports so it type-checks with the rest of the emulator.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  headers: IncomingHttpHeaders;
  raw: string;
  body: { client_key: string; event: string; create_time: number; user_openid: string; content: string };
  content: Record<string, unknown>;
}

export interface Sink {
  url: string;
  received: Received[];
  /** Status to answer with; a function gets the 1-based request count. */
  status: number | ((n: number) => number);
  waitFor(pred: (r: Received) => boolean, timeoutMs?: number): Promise<Received>;
  close(): Promise<void>;
}

export async function startSink(): Promise<Sink> {
  let count = 0;
  const waiters: Array<{ pred: (r: Received) => boolean; resolve: (r: Received) => void }> = [];
  const sink: Sink = {
    url: '',
    received: [],
    status: 200,
    waitFor(pred, timeoutMs = 5000) {
      const hit = sink.received.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve: (r: Received) => { clearTimeout(timer); resolve(r); } };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`webhook not received within ${timeoutMs} ms; got ${sink.received.map((r) => r.body.event).join(', ')}`));
        }, timeoutMs);
        waiters.push(w);
      });
    },
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      count++;
      const status = typeof sink.status === 'function' ? sink.status(count) : sink.status;
      const raw = Buffer.concat(chunks).toString('utf8');
      if (status === 200) {
        const body = JSON.parse(raw) as Received['body'];
        const r: Received = { headers: req.headers, raw, body, content: JSON.parse(body.content) as Record<string, unknown> };
        sink.received.push(r);
        for (const w of [...waiters]) if (w.pred(r)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(r); }
      }
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  sink.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/tiktok`;
  return sink;
}

export interface ApiResult<T = Record<string, unknown>> { code: number; message: string; request_id: string; data: T }

/** Calls a TikTok endpoint. `path` is the part after /open_api/v1.3/. GET bodies go in the query. */
export async function api<T = Record<string, any>>(
  base: string, method: 'GET' | 'POST', path: string, opts: { token?: string; body?: Record<string, unknown>; query?: Record<string, string> } = {},
): Promise<ApiResult<T>> {
  const qs = opts.query ? `?${new URLSearchParams(opts.query).toString()}` : '';
  const headers: Record<string, string> = {};
  if (opts.token !== undefined) headers['Access-Token'] = opts.token;
  if (opts.body) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}/open_api/v1.3/${path}${qs}`, { method, headers, body: opts.body ? JSON.stringify(opts.body) : undefined });
  if (res.status !== 200) throw new Error(`HTTP ${res.status} for ${path}`);
  return (await res.json()) as ApiResult<T>;
}

export async function control<T = any>(base: string, method: 'GET' | 'POST', path: string, body?: Record<string, unknown>): Promise<T> {
  const res = await fetch(`${base}/_control/${path}`, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = (await res.json()) as T;
  if (res.status >= 400) throw Object.assign(new Error(`control ${path}: HTTP ${res.status} ${JSON.stringify(json)}`), { status: res.status, body: json });
  return json;
}

export interface Connected { accessToken: string; refreshToken: string; openId: string; scope: string }

/** Creates the business (if needed) and runs the whole OAuth flow for it. */
export async function connectBusiness(
  base: string, appId: string, appSecret: string, username: string, extra: { region?: string; scope?: string } = {},
): Promise<Connected> {
  await control(base, 'POST', 'businesses', { username, ...(extra.region ? { region: extra.region } : {}) });
  const redirect = 'https://gateway.example/connect/tiktok/callback';
  const q = new URLSearchParams({
    client_key: appId, response_type: 'code', redirect_uri: redirect, state: 'st-1', login_as: username,
    scope: extra.scope ?? 'user.info.basic,message.list.read,message.list.send,message.list.manage',
  });
  const res = await fetch(`${base}/v2/auth/authorize?${q.toString()}`, { redirect: 'manual' });
  const loc = new URL(res.headers.get('location') ?? '');
  const code = loc.searchParams.get('code');
  if (!code) throw new Error(`authorize failed: ${loc.href}`);
  const tok = await api(base, 'POST', 'tt_user/oauth2/token/', {
    body: { client_id: appId, client_secret: appSecret, grant_type: 'authorization_code', auth_code: code, redirect_uri: redirect },
  });
  if (tok.code !== 0) throw new Error(`token exchange failed: ${tok.code} ${tok.message}`);
  return { accessToken: tok.data['access_token'], refreshToken: tok.data['refresh_token'], openId: tok.data['open_id'], scope: tok.data['scope'] };
}
