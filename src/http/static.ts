import { existsSync, statSync } from 'node:fs';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import fastifyStatic from '@fastify/static';
import { ApiError } from '../core/errors.js';

/** The built inbox: `web/dist` beside `src/` (development, tests) and beside `dist/` (the package). */
export const WEB_DIST = fileURLToPath(new URL('../../web/dist', import.meta.url));

/** Paths the single-page app must never answer for: unknown API paths stay JSON 404s. */
const RESERVED = ['/v1', '/auth', '/webhooks', '/connect', '/sandbox', '/docs', '/openapi.json', '/healthz', '/readyz', '/metrics'];
const reserved = (path: string) => RESERVED.some((p) => path === p || path.startsWith(p + '/') || path.startsWith(p + '?'));

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': [
    "default-src 'self'", "script-src 'self'", "style-src 'self' 'unsafe-inline'", "img-src 'self' data: blob: https: http:",
    "connect-src 'self'", "font-src 'self'", "object-src 'none'", "frame-src 'none'", "frame-ancestors 'none'", "base-uri 'self'", "form-action 'self'",
  ].join('; '),
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
};

const NOT_BUILT = `<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>dmgate</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}</style>
<h1>The inbox is not built</h1><p>Run <code>npm run build</code> (or <code>npx vite build --config web/vite.config.ts</code>) and reload.
The API is at <a href="/docs">/docs</a>.</p></html>`;

/**
 * Serves the inbox at `/`: files of web/dist (hashed assets cached for a year), and index.html for
 * every other GET outside the API prefixes (client-side routes such as /c/cv_… or /settings).
 */
export function staticRoutes(root: string = WEB_DIST): FastifyPluginAsync {
  return async (app) => {
    await app.register(fastifyStatic, { root, serve: false });
    const rootAbs = resolve(root);

    const sendIndex = (reply: FastifyReply) => {
      void reply.headers({ ...SECURITY_HEADERS, 'cache-control': 'no-cache' });
      if (!existsSync(join(rootAbs, 'index.html'))) return reply.code(503).type('text/html; charset=utf-8').send(NOT_BUILT);
      return reply.type('text/html; charset=utf-8').sendFile('index.html', rootAbs, { cacheControl: false });
    };

    app.get('/', { schema: { hide: true } }, async (_req, reply) => sendIndex(reply));
    app.get('/*', { schema: { hide: true } }, async (req, reply) => {
      let path: string;
      try { path = decodeURIComponent(req.url.split('?')[0]); } catch { throw new ApiError('invalid_request', 'the path is not valid percent-encoding'); }
      if (reserved(path)) throw new ApiError('not_found', `no route for ${req.method} ${path}`);
      const file = resolve(rootAbs, '.' + path);
      if (file.startsWith(rootAbs + sep) && existsSync(file) && statSync(file).isFile()) {
        const immutable = path.startsWith('/assets/');
        void reply.headers(SECURITY_HEADERS);
        return reply.sendFile(path.slice(1), rootAbs, immutable
          ? { immutable: true, maxAge: '365d' }
          : { cacheControl: true, maxAge: '1h' });
      }
      // A missing asset is a 404, not the app: a stale tab asking for an old chunk must see an error.
      if (path.startsWith('/assets/') || (extname(path) && extname(path) !== '.html')) throw new ApiError('not_found', `no file ${path}`);
      return sendIndex(reply);
    });
  };
}
