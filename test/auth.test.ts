import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { passwordsIn } from './helpers/audit.js';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { createUser } from '../src/auth/users.js';

/** A response's JSON body, loosely typed for assertions. */
const j = async (r: Response): Promise<any> => r.json();

/** Inbox sign-in: sessions, CSRF, rate limiting, user and API-key administration. */
describe('inbox auth', () => {
  let gw: TestGateway;

  interface Session { cookie: string; csrf: string; body: any }
  async function login(email: string, password: string, headers: Record<string, string> = {}): Promise<{ status: number; session?: Session; res: Response; body: any }> {
    gw.keepSecret(password, 'a password');
    const res = await fetch(gw.url + '/auth/login', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ email, password }) });
    const body = await j(res);
    if (res.status !== 200) return { status: res.status, res, body };
    const setCookie = res.headers.get('set-cookie')!;
    gw.keepSecret(setCookie.split(';')[0].split('=')[1], 'a session cookie');
    gw.keepSecret(body.csrf_token, 'a CSRF token');
    return { status: 200, res, body, session: { cookie: setCookie.split(';')[0], csrf: body.csrf_token, body } };
  }
  const call = (s: Session | null, method: string, path: string, body?: unknown, csrf = true) => {
    for (const password of passwordsIn(body)) gw.keepSecret(password, 'a password');
    return fetch(gw.url + path, {
      method,
      headers: {
        ...(s ? { cookie: s.cookie } : {}), ...(s && csrf ? { 'x-csrf-token': s.csrf } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  };

  beforeAll(async () => {
    gw = await startTestGateway();
    await createUser(gw.server.ctx.database, { email: 'Admin@Example.com', role: 'admin', password: 'correct horse', name: 'Ada' });
    await createUser(gw.server.ctx.database, { email: 'agent@example.com', role: 'agent', password: 'battery staple', name: 'Bo' });
  });
  afterAll(async () => { await gw?.close(); });

  it('signs in with an httpOnly SameSite cookie and answers the user and CSRF token', async () => {
    const { status, res, body, session } = await login('admin@example.com', 'correct horse');
    expect(status).toBe(200);
    const cookie = res.headers.get('set-cookie')!;
    expect(cookie).toMatch(/^dmgate_session=[\w-]{40,};/);
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Lax/i);
    expect(cookie).not.toMatch(/Secure/i); // http public URL
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(body.user).toMatchObject({ email: 'admin@example.com', role: 'admin', name: 'Ada', disabled: false });
    expect(body.user).not.toHaveProperty('password_hash');
    expect(body.csrf_token).toMatch(/^[\w-]{20,}$/);
    expect(body.inbox).toMatchObject({ response_sla_hours: 12 });

    const me = await call(session!, 'GET', '/auth/me');
    expect(me.status).toBe(200);
    expect((await j(me)).csrf_token).toBe(body.csrf_token);
    // The stored session id is the token's hash, never the token.
    const token = session!.cookie.split('=')[1];
    const rows = await gw.server.ctx.database.db.selectFrom('sessions').select('id').execute();
    expect(rows.some((r) => r.id === token)).toBe(false);
  });

  it('refuses wrong passwords and unknown users alike, then rate-limits with Retry-After', async () => {
    const a = await login('agent@example.com', 'nope nope', { 'x-forwarded-for': '203.0.113.7' });
    const b = await login('ghost@example.com', 'nope nope', { 'x-forwarded-for': '203.0.113.7' });
    expect(a.status).toBe(401);
    expect(b.status).toBe(401);
    expect(a.body.error).toMatchObject({ code: 'unauthorized', message: 'wrong email or password' });
    expect(b.body.error.message).toBe(a.body.error.message);
    for (let i = 0; i < 4; i++) await login('agent@example.com', 'nope nope', { 'x-forwarded-for': '203.0.113.7' });
    const limited = await login('agent@example.com', 'battery staple', { 'x-forwarded-for': '203.0.113.7' });
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('rate_limited');
    expect(Number(limited.res.headers.get('retry-after'))).toBeGreaterThan(800);
    // Another address is not locked out.
    expect((await login('agent@example.com', 'battery staple', { 'x-forwarded-for': '198.51.100.2' })).status).toBe(200);
  });

  it('refuses a cross-site login form', async () => {
    const r = await login('admin@example.com', 'correct horse', { origin: 'https://evil.example' });
    expect(r.status).toBe(403);
  });

  it('needs the CSRF token on cookie-authenticated writes, not on reads', async () => {
    const { session } = await login('agent@example.com', 'battery staple');
    expect((await call(session!, 'GET', '/v1/users')).status).toBe(200);
    const noCsrf = await call(session!, 'POST', '/v1/api-keys', { name: 'x' }, false);
    expect(noCsrf.status).toBe(403);
    // With the token an agent reaches the route, which needs an admin.
    const agentTries = await call(session!, 'POST', '/v1/api-keys', { name: 'x' });
    expect(agentTries.status).toBe(403);
    expect((await j(agentTries)).error.message).toMatch(/admin/);
    expect((await call(session!, 'POST', '/auth/logout', undefined, false)).status).toBe(403);
  });

  it('logs out: the cookie is cleared and the session no longer works', async () => {
    const { session } = await login('agent@example.com', 'battery staple');
    const out = await call(session!, 'POST', '/auth/logout');
    expect(out.status).toBe(204);
    expect(out.headers.get('set-cookie')).toMatch(/dmgate_session=;/);
    expect((await call(session!, 'GET', '/auth/me')).status).toBe(401);
    expect((await call(session!, 'GET', '/v1/conversations')).status).toBe(401);
  });

  it('lets admins manage users; keeps one active admin; disabling ends sessions', async () => {
    const admin = (await login('admin@example.com', 'correct horse')).session!;
    const created = await call(admin, 'POST', '/v1/users', { email: 'Cy@Example.com', name: 'Cy', role: 'agent', password: 'longenough' });
    expect(created.status).toBe(201);
    const cy = await j(created);
    expect(cy).toMatchObject({ email: 'cy@example.com', role: 'agent', disabled: false });
    expect((await call(admin, 'POST', '/v1/users', { email: 'cy@example.com', role: 'agent', password: 'longenough' })).status).toBe(409);
    const short = await call(admin, 'POST', '/v1/users', { email: 'dee@example.com', role: 'agent', password: 'short' });
    expect(short.status).toBe(400);
    expect((await j(short)).error.details.field).toBe('password');

    const cySession = (await login('cy@example.com', 'longenough')).session!;
    const promoted = await call(admin, 'PATCH', `/v1/users/${cy.id}`, { role: 'admin' });
    expect((await j(promoted)).role).toBe('admin');
    const disabled = await call(admin, 'PATCH', `/v1/users/${cy.id}`, { disabled: true });
    expect((await j(disabled)).disabled).toBe(true);
    expect((await call(cySession, 'GET', '/v1/users')).status).toBe(401);
    const relogin = await login('cy@example.com', 'longenough');
    expect(relogin.status).toBe(403);

    const me = admin.body.user.id as string;
    const demoteSelf = await call(admin, 'PATCH', `/v1/users/${me}`, { role: 'agent' });
    expect(demoteSelf.status).toBe(409);
    const list = await j(await call(admin, 'GET', '/v1/users'));
    expect(list.data.map((u: any) => u.email)).toEqual(['admin@example.com', 'agent@example.com', 'cy@example.com']);
  });

  it('changes the own password and keeps the current session only', async () => {
    await createUser(gw.server.ctx.database, { email: 'pw@example.com', role: 'agent', password: 'first password' });
    const a = (await login('pw@example.com', 'first password')).session!;
    const b = (await login('pw@example.com', 'first password')).session!;
    const wrong = await call(a, 'POST', '/auth/password', { current_password: 'nope', new_password: 'second password' });
    expect(wrong.status).toBe(400);
    expect((await call(a, 'POST', '/auth/password', { current_password: 'first password', new_password: 'second password' })).status).toBe(204);
    expect((await call(a, 'GET', '/auth/me')).status).toBe(200);
    expect((await call(b, 'GET', '/auth/me')).status).toBe(401);
    expect((await login('pw@example.com', 'second password')).status).toBe(200);
  });

  it('manages API keys: the key is shown once, revoked keys stop working at once', async () => {
    const admin = (await login('admin@example.com', 'correct horse')).session!;
    const res = await call(admin, 'POST', '/v1/api-keys', { name: 'zapier' });
    expect(res.status).toBe(201);
    const created = await j(res);
    expect(created.key).toMatch(/^dmg_/);
    expect(created.prefix).toBe(created.key.slice(0, 10));
    const withKey = () => fetch(gw.url + '/v1/accounts', { headers: { authorization: `Bearer ${created.key}` } });
    expect((await withKey()).status).toBe(200);
    const list = await j(await call(admin, 'GET', '/v1/api-keys'));
    const listed = list.data.find((k: any) => k.id === created.id);
    expect(listed).toMatchObject({ name: 'zapier', revoked_at: null });
    expect(listed.last_used_at).not.toBeNull();
    expect(JSON.stringify(list)).not.toContain(created.key);
    const revoked = await call(admin, 'DELETE', `/v1/api-keys/${created.id}`);
    expect((await j(revoked)).revoked_at).not.toBeNull();
    expect((await withKey()).status).toBe(401);
  });

  it('serves the inbox at / with an SPA fallback that leaves the API prefixes alone', async () => {
    const root = await fetch(gw.url + '/');
    expect([200, 503]).toContain(root.status);
    expect(root.headers.get('content-type')).toMatch(/text\/html/);
    expect(root.headers.get('content-security-policy')).toMatch(/default-src 'self'/);
    const deep = await fetch(gw.url + '/c/cv_123');
    expect(deep.status).toBe(root.status);
    for (const path of ['/v1/nope', '/auth/nope', '/webhooks/nope', '/connect/nope', '/sandbox/x', '/docs/nope.json', '/metrics/nope', '/healthz/x']) {
      const r = await fetch(gw.url + path);
      expect(r.status, path).toBe(404);
      expect(r.headers.get('content-type'), path).toMatch(/json/);
    }
    expect((await fetch(gw.url + '/assets/missing-abc.js')).status).toBe(404);
    expect((await fetch(gw.url + '/healthz')).status).toBe(200);
    expect((await fetch(gw.url + '/openapi.json')).status).toBe(200);
    const spec = await j(await fetch(gw.url + '/openapi.json'));
    expect(Object.keys(spec.paths)).toEqual(expect.arrayContaining(['/auth/login', '/auth/me', '/auth/logout', '/v1/users', '/v1/users/{id}', '/v1/api-keys', '/v1/api-keys/{id}']));
  });
});

describe('sign-in throttling from a client that talks to dmgate directly', () => {
  it('counts failures by the connecting address when the peer is not a trusted proxy: a made-up X-Forwarded-For does not escape the limit', async () => {
    // Tests connect from loopback, a trusted proxy by default; trusting no proxy is what a gateway exposed directly looks like.
    const gw = await startTestGateway({ env: { DMGATE_TRUST_PROXY: 'false' } });
    try {
      await createUser(gw.server.ctx.database, { email: 'direct@example.com', role: 'agent', password: 'battery staple' });
      const login = (password: string, forwardedFor: string) => fetch(gw.url + '/auth/login', {
        method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': forwardedFor }, body: JSON.stringify({ email: 'direct@example.com', password }),
      });
      for (let i = 0; i < 5; i++) expect((await login('nope nope', `203.0.113.${i}`)).status).toBe(401);
      const spoofed = await login('battery staple', '198.51.100.99');
      expect(spoofed.status).toBe(429);
      expect(Number(spoofed.headers.get('retry-after'))).toBeGreaterThan(800);
    } finally {
      await gw.close();
    }
  });
});
