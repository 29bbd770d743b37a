/**
 * OAuth for TikTok Business accounts (tiktok-api.md §1): the consent page TikTok serves at
 * www.tiktok.com/v2/auth/authorize, the token / refresh / revoke / token_info endpoints, and the
 * Access-Token check every business endpoint runs.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { EmulatorContext } from './context.js';
import { invalidParam, TikTokError } from './envelope.js';
import { findBusiness } from './directory.js';
import { body, query, str, tiktokRoute } from './http.js';
import { randomToken } from './ids.js';
import type { BusinessRec } from './state.js';

/** Access-Token header check (tiktok-api.md §2.1): no "Bearer", token must belong to business_id. */
export function authenticate(ctx: EmulatorContext, req: FastifyRequest, businessId: unknown, scope?: string): BusinessRec {
  const raw = req.headers['access-token'];
  const token = Array.isArray(raw) ? raw[0] : raw;
  if (token === undefined || token.trim() === '') throw new TikTokError(40104);
  if (/^bearer\s/i.test(token)) throw new TikTokError(40105);
  const rec = ctx.store.data.access_tokens[token];
  if (!rec || rec.revoked) throw new TikTokError(40105);
  if (rec.expires_at <= ctx.clock()) throw new TikTokError(40102);
  if (typeof businessId !== 'string' || businessId === '') throw invalidParam('business_id', 'is required');
  // Emulator choice: a valid token used for another business is a permission error (40001).
  if (businessId !== rec.business_id) throw new TikTokError(40001, 'The access token has no permission for this business_id.');
  const biz = ctx.store.data.businesses[businessId];
  if (!biz) throw new TikTokError(40105);
  if (scope && !rec.scope.includes(scope)) throw new TikTokError(40001, `The access token lacks the ${scope} scope.`);
  return biz;
}

/** The token endpoints name the app client_id/client_secret; wrong id → 40113, wrong secret → 40101. */
export function checkClient(ctx: EmulatorContext, id: unknown, secret: unknown, idField = 'client_id', secretField = 'client_secret'): void {
  if (typeof id !== 'string' || id === '') throw invalidParam(idField, 'is required');
  if (id !== ctx.appId) throw new TikTokError(40113);
  if (typeof secret !== 'string' || secret === '') throw invalidParam(secretField, 'is required');
  if (secret !== ctx.appSecret) throw new TikTokError(40101);
}

function issueTokens(ctx: EmulatorContext, biz: BusinessRec, scope: string[], refreshExpiresAt?: number): Record<string, unknown> {
  const now = ctx.clock();
  const d = ctx.store.data;
  const access = randomToken('act.');
  const refresh = randomToken('rft.');
  const accessExp = now + ctx.config.access_token_ttl_s * 1000;
  const refreshExp = refreshExpiresAt ?? now + ctx.config.refresh_token_ttl_s * 1000;
  d.access_tokens[access] = { token: access, business_id: biz.open_id, scope, expires_at: accessExp, revoked: false };
  d.refresh_tokens[refresh] = { token: refresh, business_id: biz.open_id, scope, expires_at: refreshExp, revoked: false, rotated: false };
  ctx.store.changed();
  return {
    access_token: access,
    token_type: 'Bearer',
    scope: scope.join(','),
    expires_in: Math.max(0, Math.round((accessExp - now) / 1000)),
    refresh_token: refresh,
    refresh_token_expires_in: Math.max(0, Math.round((refreshExp - now) / 1000)),
    open_id: biz.open_id,
  };
}

/** Every access and refresh token of the business stops working (user deauthorised the app). */
export function revokeAllTokens(ctx: EmulatorContext, businessId: string): void {
  const d = ctx.store.data;
  for (const t of Object.values(d.access_tokens)) if (t.business_id === businessId) t.revoked = true;
  for (const t of Object.values(d.refresh_tokens)) if (t.business_id === businessId) t.revoked = true;
  ctx.store.changed();
}

export function expireAccessTokens(ctx: EmulatorContext, businessId: string): void {
  const now = ctx.clock();
  for (const t of Object.values(ctx.store.data.access_tokens)) {
    if (t.business_id === businessId && t.expires_at > now) t.expires_at = now;
  }
  ctx.store.changed();
}

/** Scope lists arrive comma-separated (TikTok's form); spaces are tolerated too. */
function parseScopes(raw: string | null): string[] {
  return [...new Set((raw ?? '').split(/[\s,]+/).filter(Boolean))];
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function validRedirect(uri: string | null): URL | null {
  if (!uri) return null;
  try {
    const u = new URL(uri);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u : null;
  } catch {
    return null;
  }
}

export function registerOAuthRoutes(app: FastifyInstance, ctx: EmulatorContext): void {
  app.get('/v2/auth/authorize', async (req, reply) => {
    ctx.stats.calls['v2/auth/authorize'] = (ctx.stats.calls['v2/auth/authorize'] ?? 0) + 1;
    const q = query(req);
    const redirect = validRedirect(q.get('redirect_uri'));
    if (!redirect) {
      return reply.code(400).type('text/html; charset=utf-8')
        .send('<!doctype html><title>Authorization error</title><p>redirect_uri is missing or is not an http(s) URL.</p>');
    }
    const state = q.get('state');
    const back = (params: Record<string, string>) => {
      const u = new URL(redirect.href);
      for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
      if (state !== null) u.searchParams.set('state', state);
      return reply.redirect(u.href, 302);
    };
    // error_code values are emulator assumptions; error and error_type follow issue chatwoot#14519.
    const fail = (error: string, code: string, description: string, type: string) =>
      back({ error, error_code: code, error_description: description, error_type: type });

    if (q.get('client_key') !== ctx.appId) return fail('invalid_client', '10003', 'The client_key is not valid.', 'client_key');
    if (q.get('response_type') !== 'code') return fail('invalid_request', '10002', 'response_type must be code.', 'response_type');
    const scopes = parseScopes(q.get('scope'));
    if (scopes.length === 0) return fail('invalid_scope', '10006', 'At least one scope is required.', 'scope');
    const missing = scopes.filter((s) => !ctx.config.app_scopes.includes(s));
    if (missing.length > 0) return fail('invalid_scope', '10006', `The app has not been approved for scope(s): ${missing.join(',')}.`, 'scope');
    if (q.get('deny') !== null) return fail('access_denied', '10007', 'The user cancelled the authorization.', 'user_cancel');

    const loginAs = q.get('login_as');
    if (loginAs !== null) {
      const biz = findBusiness(ctx, loginAs);
      if (!biz) {
        return reply.code(404).type('text/html; charset=utf-8')
          .send(`<!doctype html><title>Unknown account</title><p>No business account named ${escapeHtml(loginAs)}. Create it with POST _control/businesses.</p>`);
      }
      const code = randomToken('', 24);
      ctx.store.data.auth_codes[code] = {
        // Compared verbatim at the token exchange, as OAuth servers do.
        code, business_id: biz.open_id, redirect_uri: q.get('redirect_uri')!,
        scope: scopes, expires_at: ctx.clock() + ctx.config.auth_code_ttl_s * 1000, used: false,
      };
      ctx.store.changed();
      return back({ code, scopes: scopes.join(',') });
    }

    // The consent page proper: one link per business (same query plus login_as).
    const link = (extra: Record<string, string>) => {
      const p = new URLSearchParams(q);
      for (const [k, v] of Object.entries(extra)) p.set(k, v);
      return `?${p.toString()}`;
    };
    const items = Object.values(ctx.store.data.businesses).map((b) =>
      `<li><a class="biz" href="${escapeHtml(link({ login_as: b.username }))}">Authorize as <b>@${escapeHtml(b.username)}</b> (${escapeHtml(b.display_name)}, ${escapeHtml(b.region)})</a></li>`);
    const html = `<!doctype html>
<html><head><meta charset="utf-8"><title>TikTok emulator: authorize ${escapeHtml(ctx.appId)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto}li{margin:.6rem 0}a.biz{display:inline-block;padding:.5rem .8rem;border:1px solid #ccc;border-radius:6px;text-decoration:none}</style></head>
<body><h1>Authorize app ${escapeHtml(ctx.appId)}</h1>
<p>Requested scopes: <code>${escapeHtml(scopes.join(', '))}</code></p>
${items.length ? `<ul>${items.join('\n')}</ul>` : '<p>No business accounts exist yet. Create one with <code>POST _control/businesses</code>.</p>'}
<p><a href="${escapeHtml(link({ deny: '1' }))}">Cancel</a></p>
</body></html>`;
    return reply.type('text/html; charset=utf-8').send(html);
  });

  tiktokRoute(app, ctx, 'POST', 'tt_user/oauth2/token/', async (req) => {
    const b = body(req);
    checkClient(ctx, b['client_id'], b['client_secret']);
    if (b['grant_type'] !== 'authorization_code') throw new TikTokError(40108);
    const code = str(b['auth_code']);
    if (!code) throw invalidParam('auth_code', 'is required');
    const rec = ctx.store.data.auth_codes[code];
    if (!rec || rec.used || rec.expires_at <= ctx.clock()) throw new TikTokError(40110);
    if (b['redirect_uri'] !== rec.redirect_uri) throw new TikTokError(40002, 'Param redirect_uri does not match the one used for authorization.');
    const biz = ctx.store.data.businesses[rec.business_id];
    if (!biz) throw new TikTokError(40110);
    rec.used = true; // single use, even if something below failed
    return issueTokens(ctx, biz, rec.scope);
  });

  tiktokRoute(app, ctx, 'POST', 'tt_user/oauth2/refresh_token/', async (req) => {
    const b = body(req);
    checkClient(ctx, b['client_id'], b['client_secret']);
    if (b['grant_type'] !== 'refresh_token') throw new TikTokError(40108);
    const token = str(b['refresh_token']);
    if (!token) throw invalidParam('refresh_token', 'is required');
    const rec = ctx.store.data.refresh_tokens[token];
    if (!rec) throw new TikTokError(40107);
    const biz = ctx.store.data.businesses[rec.business_id];
    const key = biz?.username ?? rec.business_id;
    ctx.stats.refresh_calls[key] = (ctx.stats.refresh_calls[key] ?? 0) + 1;
    if (rec.revoked || rec.expires_at <= ctx.clock()) throw new TikTokError(40103);
    if (rec.rotated) throw new TikTokError(40107, 'Refresh token is invalid: it has already been used.');
    if (!biz) throw new TikTokError(40107);
    // Rotation: the old refresh token dies, the new one keeps the original expiry, so a
    // connection still has to be re-authorised once a year.
    rec.rotated = true;
    return issueTokens(ctx, biz, rec.scope, rec.expires_at);
  });

  tiktokRoute(app, ctx, 'POST', 'tt_user/oauth2/revoke/', async (req) => {
    const b = body(req);
    checkClient(ctx, b['client_id'], b['client_secret']);
    const token = str(b['access_token']);
    if (!token) throw invalidParam('access_token', 'is required');
    const rec = ctx.store.data.access_tokens[token];
    if (!rec || rec.revoked) throw new TikTokError(40105);
    revokeAllTokens(ctx, rec.business_id);
    return {};
  });

  tiktokRoute(app, ctx, 'POST', 'tt_user/token_info/get/', async (req) => {
    const b = body(req);
    const appId = b['app_id'];
    if (typeof appId !== 'string' || appId === '') throw invalidParam('app_id', 'is required');
    if (appId !== ctx.appId) throw new TikTokError(40113);
    const token = str(b['access_token']);
    if (!token) throw invalidParam('access_token', 'is required');
    const rec = ctx.store.data.access_tokens[token];
    if (!rec || rec.revoked) throw new TikTokError(40105);
    if (rec.expires_at <= ctx.clock()) throw new TikTokError(40102);
    return { app_id: ctx.appId, scope: rec.scope.join(','), creator_id: rec.business_id };
  });
}
