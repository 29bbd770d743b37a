import type { FastifyReply, FastifyRequest } from 'fastify';
import { randomToken, sha256Hex } from '../core/crypto.js';
import type { AppContext } from '../context.js';
import { SESSION_COOKIE } from '../http/authenticate.js';
import type { UserRow } from './users.js';

/** Sessions last 14 days and slide forward when used after half of that. */
export const SESSION_TTL_MS = 14 * 24 * 3600 * 1000;

export interface ActiveSession {
  /** sha256 of the cookie token (the `sessions.id`). */
  id: string;
  csrf_token: string;
  expires_at: number;
  user: UserRow;
}

/** Creates a session for a user: the random token goes to the cookie, only its hash is stored. */
export async function createSession(ctx: AppContext, userId: string): Promise<{ token: string; csrf: string; expiresAt: number }> {
  const now = ctx.clock();
  const token = randomToken(32);
  const csrf = randomToken(24);
  const expiresAt = now + SESSION_TTL_MS;
  await ctx.database.db.insertInto('sessions').values({ id: sha256Hex(token), user_id: userId, csrf_token: csrf, created_at: now, expires_at: expiresAt }).execute();
  // Housekeeping: expired sessions are never read again.
  await ctx.database.db.deleteFrom('sessions').where('expires_at', '<', now).execute();
  return { token, csrf, expiresAt };
}

/** The session the request's cookie names, if it is valid and its user is not disabled. */
export async function sessionOf(ctx: AppContext, req: FastifyRequest): Promise<ActiveSession | null> {
  const token = req.cookies?.[SESSION_COOKIE];
  if (!token) return null;
  const id = sha256Hex(token);
  const row = await ctx.database.db.selectFrom('sessions').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row || row.expires_at <= ctx.clock()) return null;
  const user = await ctx.database.db.selectFrom('users').selectAll().where('id', '=', row.user_id).executeTakeFirst();
  if (!user || user.disabled_at !== null) return null;
  return { id, csrf_token: row.csrf_token, expires_at: row.expires_at, user };
}

/** Pushes the expiry forward once half the lifetime has passed; answers the new expiry. */
export async function touchSession(ctx: AppContext, s: ActiveSession): Promise<number> {
  const now = ctx.clock();
  if (s.expires_at - now > SESSION_TTL_MS / 2) return s.expires_at;
  const expiresAt = now + SESSION_TTL_MS;
  await ctx.database.db.updateTable('sessions').set({ expires_at: expiresAt }).where('id', '=', s.id).execute();
  return expiresAt;
}

export async function deleteSession(ctx: AppContext, id: string): Promise<void> {
  await ctx.database.db.deleteFrom('sessions').where('id', '=', id).execute();
}

function cookieOptions(ctx: AppContext) {
  return {
    path: '/', httpOnly: true, sameSite: 'lax' as const,
    secure: ctx.config.publicUrl.startsWith('https:'),
  };
}

export function setSessionCookie(ctx: AppContext, reply: FastifyReply, token: string, expiresAt: number): void {
  void reply.setCookie(SESSION_COOKIE, token, { ...cookieOptions(ctx), expires: new Date(expiresAt) });
}

export function clearSessionCookie(ctx: AppContext, reply: FastifyReply): void {
  void reply.clearCookie(SESSION_COOKIE, cookieOptions(ctx));
}
