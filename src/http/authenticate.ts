import type { FastifyReply, FastifyRequest } from 'fastify';
import { sha256Hex } from '../core/crypto.js';
import { ApiError } from '../core/errors.js';
import type { AppContext } from '../context.js';
import type { ApiKeyVerifier } from '../auth/api-keys.js';

export const SESSION_COOKIE = 'dmgate_session';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * onRequest hook for every /v1 route: an API key (`Authorization: Bearer dmg_…`) or an inbox
 * session cookie. Cookie-authenticated writes must echo the session's CSRF token in `x-csrf-token`.
 */
export function authenticate(ctx: AppContext, keys: ApiKeyVerifier) {
  return async (req: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const header = req.headers.authorization;
    if (header) {
      const m = /^Bearer\s+(\S+)$/i.exec(header);
      const keyId = m ? await keys.verify(m[1]) : null;
      if (!keyId) throw new ApiError('unauthorized', 'the API key is missing, malformed or revoked');
      req.principal = { kind: 'key', id: keyId, role: 'admin' };
      return;
    }
    const token = req.cookies?.[SESSION_COOKIE];
    if (token) {
      const session = await ctx.database.db.selectFrom('sessions')
        .innerJoin('users', 'users.id', 'sessions.user_id')
        .select(['users.id as user_id', 'users.role', 'users.email', 'sessions.csrf_token', 'sessions.expires_at', 'users.disabled_at'])
        .where('sessions.id', '=', sha256Hex(token)).executeTakeFirst();
      if (session && session.expires_at > ctx.clock() && !session.disabled_at) {
        if (!SAFE_METHODS.has(req.method) && req.headers['x-csrf-token'] !== session.csrf_token) {
          throw new ApiError('forbidden', 'missing or wrong x-csrf-token header');
        }
        req.principal = { kind: 'user', id: session.user_id, role: session.role, email: session.email, csrf: session.csrf_token };
        return;
      }
    }
    throw new ApiError('unauthorized', 'send an API key as "Authorization: Bearer dmg_…" or sign in');
  };
}
