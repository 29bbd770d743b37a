import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../context.js';
import { ApiError } from '../core/errors.js';
import { hashPassword, safeEqual, verifyPassword } from '../core/crypto.js';
import { errorResponses } from '../http/schemas.js';
import { SESSION_COOKIE } from '../http/authenticate.js';
import { LoginLimiter } from './login-limiter.js';
import { clearSessionCookie, createSession, deleteSession, sessionOf, setSessionCookie, touchSession, type ActiveSession } from './sessions.js';
import { MAX_PASSWORD, normalizeEmail, updateUser, userView, type UserRow } from './users.js';
import { SessionSchema } from './schemas.js';

const tags = ['auth'];
const LoginBody = Type.Object({
  email: Type.String({ minLength: 1, maxLength: 320 }),
  password: Type.String({ minLength: 1, maxLength: MAX_PASSWORD }),
}, { additionalProperties: false });
const PasswordBody = Type.Object({
  current_password: Type.String({ minLength: 1, maxLength: MAX_PASSWORD }),
  new_password: Type.String({ minLength: 1, maxLength: MAX_PASSWORD }),
}, { additionalProperties: false });

/**
 * A browser may only post credentials from our own pages: a cross-site login form (login CSRF)
 * carries a foreign Origin. Requests without Origin (curl, server-side clients) are allowed.
 */
function checkOrigin(ctx: AppContext, req: FastifyRequest): void {
  const origin = req.headers.origin;
  if (!origin) return;
  let host: string;
  try { host = new URL(origin).host; } catch { throw new ApiError('forbidden', 'the Origin header is not a URL'); }
  // req.host is X-Forwarded-Host only when the peer is a trusted proxy (DMGATE_TRUST_PROXY).
  const allowed = new Set([req.headers.host, req.host, safeHost(ctx.config.publicUrl)].filter(Boolean));
  if (!allowed.has(host)) throw new ApiError('forbidden', `requests from ${origin} are not allowed`);
}

function safeHost(url: string): string | null {
  try { return new URL(url).host; } catch { return null; }
}

/** Cookie-authenticated writes echo the session's CSRF token. */
function checkCsrf(req: FastifyRequest, s: ActiveSession): void {
  const sent = req.headers['x-csrf-token'];
  if (typeof sent !== 'string' || !safeEqual(sent, s.csrf_token)) throw new ApiError('forbidden', 'missing or wrong x-csrf-token header');
}

/** A scrypt hash of a random password: failing logins for unknown emails cost as much as for known ones. */
let dummyHash: Promise<string> | null = null;

/** `/auth/*`: inbox sign-in with a session cookie, sign-out, the current user, own password. */
export function authRoutes(ctx: AppContext): FastifyPluginAsync {
  const limiter = new LoginLimiter(ctx.clock);
  const inbox = () => ({ response_sla_hours: ctx.config.responseSlaHours, sandbox: ctx.config.sandbox, window_policy: ctx.config.tiktokWindowPolicy });
  const sessionBody = (user: UserRow, csrf: string, expiresAt: number) => ({
    user: userView(user), csrf_token: csrf, expires_at: new Date(expiresAt).toISOString(), inbox: inbox(),
  });

  return async (base) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    // Answers about sessions must never be cached by a browser or a proxy.
    app.addHook('onSend', async (_req, reply) => { void reply.header('cache-control', 'no-store'); });

    app.post('/auth/login', {
      schema: {
        tags, security: [], summary: 'Sign in to the inbox: sets the httpOnly session cookie and answers the CSRF token',
        body: LoginBody,
        response: { 200: SessionSchema, ...errorResponses(400, 401, 403, 429) },
      },
    }, async (req, reply) => {
      checkOrigin(ctx, req);
      const email = normalizeEmail(req.body.email);
      const ip = req.ip;
      const wait = limiter.retryAfter(email, ip);
      if (wait) {
        throw new ApiError('rate_limited', `too many failed sign-ins; try again in ${Math.ceil(wait / 60)} min`, { retry_after: wait }, { 'retry-after': String(wait) });
      }
      const user = await ctx.database.db.selectFrom('users').selectAll().where('email', '=', email).executeTakeFirst();
      const ok = user
        ? await verifyPassword(req.body.password, user.password_hash)
        : await verifyPassword(req.body.password, await (dummyHash ??= hashPassword('dmgate-timing-equalizer'))).then(() => false);
      if (!user || !ok) {
        limiter.fail(email, ip);
        req.log.info({ ip }, 'sign-in failed');
        throw new ApiError('unauthorized', 'wrong email or password');
      }
      if (user.disabled_at !== null) throw new ApiError('forbidden', 'this user is disabled; ask an admin');
      limiter.succeed(email, ip);
      const s = await createSession(ctx, user.id);
      setSessionCookie(ctx, reply, s.token, s.expiresAt);
      req.log.info({ user_id: user.id }, 'signed in');
      return sessionBody(user, s.csrf, s.expiresAt);
    });

    app.post('/auth/logout', {
      schema: { tags, security: [], summary: 'Sign out: ends the session and clears the cookie', response: { 204: Type.Null(), ...errorResponses(403) } },
    }, async (req, reply) => {
      const s = await sessionOf(ctx, req);
      if (s) {
        checkCsrf(req, s);
        await deleteSession(ctx, s.id);
      }
      clearSessionCookie(ctx, reply);
      return reply.code(204).send(null);
    });

    app.get('/auth/me', {
      schema: { tags, security: [], summary: 'The signed-in user, the CSRF token and inbox settings', response: { 200: SessionSchema, ...errorResponses(401) } },
    }, async (req, reply) => {
      const s = await sessionOf(ctx, req);
      if (!s) {
        if (req.cookies?.[SESSION_COOKIE]) clearSessionCookie(ctx, reply);
        throw new ApiError('unauthorized', 'not signed in');
      }
      const expiresAt = await touchSession(ctx, s);
      if (expiresAt !== s.expires_at) setSessionCookie(ctx, reply, req.cookies[SESSION_COOKIE]!, expiresAt);
      return sessionBody(s.user, s.csrf_token, expiresAt);
    });

    app.post('/auth/password', {
      schema: {
        tags, security: [], summary: "Change the signed-in user's password (other sessions of the user end)",
        body: PasswordBody, response: { 204: Type.Null(), ...errorResponses(400, 401, 403, 429) },
      },
    }, async (req, reply) => {
      const s = await sessionOf(ctx, req);
      if (!s) throw new ApiError('unauthorized', 'not signed in');
      checkCsrf(req, s);
      const wait = limiter.retryAfter(s.user.email, req.ip);
      if (wait) throw new ApiError('rate_limited', 'too many wrong passwords; try again later', { retry_after: wait }, { 'retry-after': String(wait) });
      if (!(await verifyPassword(req.body.current_password, s.user.password_hash))) {
        limiter.fail(s.user.email, req.ip);
        throw new ApiError('invalid_request', 'the current password is wrong', { field: 'current_password' });
      }
      await updateUser(ctx.database, s.user.id, { password: req.body.new_password }, ctx.clock(), s.id).catch((err: unknown) => {
        if (err instanceof ApiError && err.details.field === 'password') throw new ApiError('invalid_request', err.message, { field: 'new_password' });
        throw err;
      });
      return reply.code(204).send(null);
    });

    app.get('/auth/status', {
      schema: {
        tags, security: [], summary: 'Whether any inbox user exists yet (the sign-in page explains how to create the first one)',
        response: { 200: Type.Object({ has_users: Type.Boolean(), sandbox: Type.Boolean() }) },
      },
    }, async () => {
      const any = await ctx.database.db.selectFrom('users').select('id').limit(1).executeTakeFirst();
      return { has_users: Boolean(any), sandbox: ctx.config.sandbox };
    });
  };
}
