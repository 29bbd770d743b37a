import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { childField, invalid } from '../core/errors.js';

/**
 * A request whose strings (path, query, body) hold U+0000 is refused (400, the field named):
 * PostgreSQL's text cannot store that character, so the write would fail as a 500 there while
 * SQLite took it, and a request must mean the same on either database.
 */
export function refuseNul(req: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
  for (const part of [req.params, req.query, req.body]) {
    const field = nulAt(part, '');
    if (field !== null) {
      done(invalid(`${field || 'the request'} must not contain the character U+0000 (NUL)`, field ? { field } : {}));
      return;
    }
  }
  done();
}

/** Where the first string holding U+0000 is (`text`, `template.buttons[0].title`; '' for `value` itself), or null. */
export function nulAt(value: unknown, path: string): string | null {
  if (typeof value === 'string') return value.includes('\u0000') ? path : null;
  if (value === null || typeof value !== 'object' || Buffer.isBuffer(value)) return null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const at = nulAt(value[i], childField(path, i));
      if (at !== null) return at;
    }
    return null;
  }
  for (const key of Object.keys(value)) {
    const at = nulAt((value as Record<string, unknown>)[key], childField(path, key));
    if (at !== null) return at;
  }
  return null;
}
