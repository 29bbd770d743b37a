import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../context.js';
import { invalid } from '../core/errors.js';
import { errorResponses, Query } from '../http/schemas.js';
import { SseHub } from './hub.js';
import { eventTypesOf } from '../events/types.js';

const StreamQuery = Query({
  types: Type.Optional(Type.String({ description: 'comma-separated event types to receive (default: all)' })),
  last_event_id: Type.Optional(Type.String({ description: 'resume after this event id (same as the Last-Event-ID header)' })),
});

/**
 * `GET /stream`: Server-Sent Events of the event log. Each event is `id: <evt id>`, `event: <type>`,
 * `data: <the same JSON body webhooks carry>`; `: ping` comments every 15 s. With `Last-Event-ID`
 * (header or `last_event_id`), every event after that one is replayed first.
 */
export function streamRoutes(ctx: AppContext): FastifyPluginAsync {
  return async (base) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const hub = new SseHub(ctx);
    app.addHook('preClose', async () => { hub.close(); });
    app.addHook('onClose', async () => { hub.close(); });

    app.get('/stream', {
      schema: {
        tags: ['events'],
        summary: 'Server-Sent Events of the event log (resumable with Last-Event-ID)',
        querystring: StreamQuery,
        produces: ['text/event-stream'],
        response: {
          200: { description: 'text/event-stream', content: { 'text/event-stream': { schema: { type: 'string' } } } },
          ...errorResponses(400, 401),
        },
      },
    }, async (req, reply) => {
      const header = req.headers['last-event-id'];
      const lastId = (Array.isArray(header) ? header[0] : header) || req.query.last_event_id;
      let afterSeq: number | null = null;
      if (lastId) {
        const row = await ctx.database.db.selectFrom('events').select('seq').where('id', '=', lastId).executeTakeFirst();
        if (!row) throw invalid(`no event ${lastId} to resume after`, { field: 'last_event_id' });
        afterSeq = row.seq;
      }
      const listed = eventTypesOf(req.query.types, 'types');
      const types = listed ? new Set<string>(listed) : null;

      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      res.socket?.setNoDelay(true);
      res.write('retry: 3000\n: connected\n\n');
      if (!hub.track(res)) { res.end(); return; }
      let client: Awaited<ReturnType<SseHub['add']>> = null;
      let gone = false;
      res.on('close', () => { gone = true; if (client) hub.remove(client); });
      try {
        client = await hub.add({ res, types }, afterSeq);
        if (gone && client) hub.remove(client);
        if (!client && !gone) res.end();
      } catch (err) {
        req.log.warn({ err }, 'event stream replay failed');
        res.end();
      }
    });
  };
}
