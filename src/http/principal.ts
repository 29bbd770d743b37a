import type { FastifyRequest } from 'fastify';
import { ApiError } from '../core/errors.js';

/** Who is calling: an API key, or an inbox user through the session cookie. */
export type Principal =
  | { kind: 'key'; id: string; role: 'admin' }
  | { kind: 'user'; id: string; role: 'admin' | 'agent'; email: string; csrf: string };

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new ApiError('unauthorized', 'authentication required');
  return req.principal;
}

export function requireAdmin(req: FastifyRequest): Principal {
  const p = principalOf(req);
  if (p.role !== 'admin') throw new ApiError('forbidden', 'this action needs an admin');
  return p;
}
