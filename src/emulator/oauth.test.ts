import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator } from './index.js';
import { api, connectBusiness, control } from './test-harness.js';

const APP = 'app_oauth';
const SECRET = 'secret_oauth';
const REDIRECT = 'https://gateway.example/cb';

let now = Date.UTC(2025, 0, 10, 12);
let emu: Awaited<ReturnType<typeof startEmulator>>;

beforeAll(async () => {
  emu = await startEmulator({ appId: APP, appSecret: SECRET, clock: () => now });
});
afterAll(async () => { await emu.close(); });

async function authorize(params: Record<string, string>): Promise<URL> {
  const q = new URLSearchParams({ client_key: APP, response_type: 'code', redirect_uri: REDIRECT, scope: 'message.list.read,message.list.send', state: 'xyz', ...params });
  const res = await fetch(`${emu.url}/v2/auth/authorize?${q.toString()}`, { redirect: 'manual' });
  expect(res.status).toBe(302);
  return new URL(res.headers.get('location')!);
}

const exchange = (code: string, over: Record<string, unknown> = {}) => api(emu.url, 'POST', 'tt_user/oauth2/token/', {
  body: { client_id: APP, client_secret: SECRET, grant_type: 'authorization_code', auth_code: code, redirect_uri: REDIRECT, ...over },
});

describe('consent page and code exchange', () => {
  it('lists the businesses, each with an approve link', async () => {
    await control(emu.url, 'POST', 'businesses', { username: 'shop_one' });
    const q = new URLSearchParams({ client_key: APP, response_type: 'code', redirect_uri: REDIRECT, scope: 'message.list.read', state: 's' });
    const html = await (await fetch(`${emu.url}/v2/auth/authorize?${q.toString()}`)).text();
    expect(html).toContain('@shop_one');
    expect(html).toContain('login_as=shop_one');
  });

  it('login_as redirects with code, state and scopes; the code works once', async () => {
    const loc = await authorize({ login_as: 'shop_one' });
    expect(loc.origin + loc.pathname).toBe(REDIRECT);
    expect(loc.searchParams.get('state')).toBe('xyz');
    expect(loc.searchParams.get('scopes')).toBe('message.list.read,message.list.send');
    const code = loc.searchParams.get('code')!;

    const ok = await exchange(code);
    expect(ok.code).toBe(0);
    expect(ok.data).toMatchObject({ token_type: 'Bearer', scope: 'message.list.read,message.list.send', expires_in: 86400, refresh_token_expires_in: 31536000 });
    expect(ok.data['access_token']).toMatch(/^act\./);
    const biz = await control(emu.url, 'POST', 'businesses', { username: 'shop_one' });
    expect(ok.data['open_id']).toBe(biz.open_id);

    expect((await exchange(code)).code).toBe(40110); // single use
  });

  it('rejects wrong app, secret, grant_type, redirect_uri and expired codes', async () => {
    const code = (await authorize({ login_as: 'shop_one' })).searchParams.get('code')!;
    expect((await exchange(code, { client_id: 'nope' })).code).toBe(40113);
    expect((await exchange(code, { client_secret: 'nope' })).code).toBe(40101);
    expect((await exchange(code, { grant_type: 'password' })).code).toBe(40108);
    expect((await exchange(code, { redirect_uri: 'https://evil.example/cb' })).code).toBe(40002);
    expect((await exchange('garbage')).code).toBe(40110);
    now += 601_000; // authCodeTtlS default 600
    expect((await exchange(code)).code).toBe(40110);
  });

  it('redirects with an error for scopes the app lacks and for an unknown client_key', async () => {
    await control(emu.url, 'POST', 'config', { app_scopes: ['message.list.read'] });
    const bad = await authorize({ login_as: 'shop_one' });
    expect(bad.searchParams.get('error')).toBe('invalid_scope');
    expect(bad.searchParams.get('error_type')).toBe('scope');
    expect(bad.searchParams.get('error_code')).toBeTruthy();
    expect(bad.searchParams.get('error_description')).toContain('message.list.send');
    expect(bad.searchParams.get('state')).toBe('xyz');
    expect(bad.searchParams.get('code')).toBeNull();
    await control(emu.url, 'POST', 'config', { app_scopes: ['user.info.basic', 'message.list.read', 'message.list.send', 'message.list.manage'] });

    const unknown = await authorize({ client_key: 'other', login_as: 'shop_one' });
    expect(unknown.searchParams.get('error')).toBeTruthy();
  });
});

describe('Access-Token checks', () => {
  it('answers 40104 / 40105 / 40102 with HTTP 200 envelopes, and 404 without the trailing slash', async () => {
    const c = await connectBusiness(emu.url, APP, SECRET, 'shop_tokens');
    const q = { business_id: c.openId, fields: '["username","display_name"]' };

    const missing = await api(emu.url, 'GET', 'business/get/', { query: q });
    expect(missing).toMatchObject({ code: 40104, message: 'Access token is null, you should set it in http header with key Access-Token.', data: {} });
    expect(missing.request_id).toBeTruthy();
    expect((await api(emu.url, 'GET', 'business/get/', { query: q, token: `Bearer ${c.accessToken}` })).code).toBe(40105);
    expect((await api(emu.url, 'GET', 'business/get/', { query: q, token: 'act.unknown' })).code).toBe(40105);

    const ok = await api(emu.url, 'GET', 'business/get/', { query: q, token: c.accessToken });
    expect(ok.code).toBe(0);
    expect(ok.data).toEqual({ username: 'shop_tokens', display_name: 'shop_tokens', region: 'SG' });

    const other = await connectBusiness(emu.url, APP, SECRET, 'shop_other');
    expect((await api(emu.url, 'GET', 'business/get/', { query: { business_id: other.openId }, token: c.accessToken })).code).toBe(40001);

    const noSlash = await fetch(`${emu.url}/open_api/v1.3/business/get?business_id=${encodeURIComponent(c.openId)}`, { headers: { 'Access-Token': c.accessToken } });
    expect(noSlash.status).toBe(404);

    await control(emu.url, 'POST', 'tokens/expire', { business: 'shop_tokens' });
    expect((await api(emu.url, 'GET', 'business/get/', { query: q, token: c.accessToken })).code).toBe(40102);
  });

  it('token_info reports app, scope and creator', async () => {
    const c = await connectBusiness(emu.url, APP, SECRET, 'shop_info');
    const info = await api(emu.url, 'POST', 'tt_user/token_info/get/', { body: { app_id: APP, access_token: c.accessToken } });
    expect(info.data).toEqual({ app_id: APP, scope: c.scope, creator_id: c.openId });
  });
});

describe('refresh and revoke', () => {
  const refresh = (token: string) => api(emu.url, 'POST', 'tt_user/oauth2/refresh_token/', {
    body: { client_id: APP, client_secret: SECRET, grant_type: 'refresh_token', refresh_token: token },
  });

  it('rotates the refresh token and counts refresh calls per business', async () => {
    const c = await connectBusiness(emu.url, APP, SECRET, 'shop_refresh');
    await control(emu.url, 'POST', 'tokens/expire', { business: 'shop_refresh' });
    const r = await refresh(c.refreshToken);
    expect(r.code).toBe(0);
    expect(r.data['refresh_token']).not.toBe(c.refreshToken);
    expect(r.data['open_id']).toBe(c.openId);
    const q = { business_id: c.openId };
    expect((await api(emu.url, 'GET', 'business/get/', { query: q, token: r.data['access_token'] })).code).toBe(0);
    expect((await control(emu.url, 'GET', 'stats')).refresh_calls['shop_refresh']).toBe(1);

    expect((await refresh(c.refreshToken)).code).toBe(40107); // the old one is dead
    expect((await refresh('rft.unknown')).code).toBe(40107);
  });

  it('revoke kills access and refresh tokens', async () => {
    const c = await connectBusiness(emu.url, APP, SECRET, 'shop_revoke');
    await control(emu.url, 'POST', 'tokens/revoke', { business: 'shop_revoke' });
    expect((await api(emu.url, 'GET', 'business/get/', { query: { business_id: c.openId }, token: c.accessToken })).code).toBe(40105);
    expect((await refresh(c.refreshToken)).code).toBe(40103);

    const d = await connectBusiness(emu.url, APP, SECRET, 'shop_revoke');
    const rv = await api(emu.url, 'POST', 'tt_user/oauth2/revoke/', { body: { client_id: APP, client_secret: SECRET, access_token: d.accessToken } });
    expect(rv.code).toBe(0);
    expect((await api(emu.url, 'GET', 'business/get/', { query: { business_id: d.openId }, token: d.accessToken })).code).toBe(40105);
  });

  it('expired refresh tokens answer 40103', async () => {
    const c = await connectBusiness(emu.url, APP, SECRET, 'shop_old');
    now += 31_536_000_000 + 1000;
    expect((await refresh(c.refreshToken)).code).toBe(40103);
  });
});
