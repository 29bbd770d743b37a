import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../context.js';
import { ping } from '../db/database.js';
import { migrationsDone } from '../db/migrate.js';
import { metricsRoutes } from './metrics.js';

/** Liveness, readiness and the OpenAPI document. */
export function systemRoutes(ctx: AppContext): FastifyPluginAsync {
  return async (app) => {
    app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
    app.get('/readyz', {
      schema: { tags: ['system'], security: [], response: { 200: Type.Object({ status: Type.String(), database: Type.Boolean(), migrations: Type.Boolean() }), 503: Type.Object({ status: Type.String(), database: Type.Boolean(), migrations: Type.Boolean() }) } },
    }, async (_req, reply) => {
      const database = await ping(ctx.database);
      const migrations = database && (await migrationsDone(ctx.database).catch(() => false));
      const ready = database && migrations;
      return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', database, migrations });
    });
    app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
    await app.register(metricsRoutes(ctx.metrics));
  };
}
