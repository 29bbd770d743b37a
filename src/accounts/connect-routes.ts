import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../context.js';
import type { ApiKeyVerifier } from '../auth/api-keys.js';
import { ApiError, errorBody } from '../core/errors.js';
import { authenticate } from '../http/authenticate.js';
import { requireAdmin } from '../http/principal.js';
import { accountView } from './store.js';
import { finishConnect, startConnect, type CallbackQuery } from './connect.js';

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${escapeHtml(title)} · dmgate</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#111}h1{font-size:1.4rem}a{color:#0b57d0}</style>
<h1>${escapeHtml(title)}</h1>${body}</html>`;
}

const wantsJson = (req: FastifyRequest) => (req.headers.accept ?? '').includes('application/json');

/** OAuth connect and reconnect of a TikTok Business account (any number of accounts). */
export function connectRoutes(ctx: AppContext, keys: ApiKeyVerifier): FastifyPluginAsync {
  return async (app) => {
    app.get('/connect/tiktok', {
      onRequest: authenticate(ctx, keys),
      schema: {
        tags: ['accounts'], summary: "Redirects to TikTok's consent page to connect (or reconnect) a Business account",
        querystring: Type.Object({ return_to: Type.Optional(Type.String({ pattern: '^/' })) }),
        response: { 302: Type.Null(), 401: { $ref: 'Error#' }, 403: { $ref: 'Error#' } },
      },
    }, async (req, reply) => {
      requireAdmin(req);
      const url = await startConnect(ctx, (req.query as { return_to?: string }).return_to ?? null);
      return reply.redirect(url, 302);
    });

    app.get('/connect/tiktok/callback', {
      schema: {
        tags: ['accounts'], security: [], summary: "TikTok's OAuth redirect target",
        querystring: Type.Object({
          code: Type.Optional(Type.String()), state: Type.Optional(Type.String()), scopes: Type.Optional(Type.String()),
          error: Type.Optional(Type.String()), error_code: Type.Optional(Type.String()), error_description: Type.Optional(Type.String()), error_type: Type.Optional(Type.String()),
        }, { additionalProperties: true }),
      },
    }, async (req, reply: FastifyReply) => {
      try {
        const { account, created, returnTo } = await finishConnect(ctx, req.query as CallbackQuery);
        if (wantsJson(req)) return reply.send({ account: accountView(account), created });
        if (returnTo) return reply.redirect(`${returnTo}${returnTo.includes('?') ? '&' : '?'}connected=${account.id}`, 302);
        const name = account.username ? '@' + account.username : account.external_id;
        const note = account.status === 'restricted' ? `<p><strong>Restricted:</strong> ${escapeHtml(account.status_reason ?? '')}</p>` : '<p>New DMs to this account now arrive in dmgate.</p>';
        return reply.type('text/html').send(page(created ? `Connected ${name}` : `Reconnected ${name}`, `${note}<p><a href="/">Open the inbox</a></p>`));
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        req.log.warn({ code: err.code, details: err.details }, 'connect callback refused');
        if (wantsJson(req)) return reply.code(err.status).send(errorBody(err, req.id));
        return reply.code(err.status).type('text/html').send(page('TikTok account not connected', `<p>${escapeHtml(err.message)}</p><p><a href="/">Back to dmgate</a></p>`));
      }
    });
  };
}
