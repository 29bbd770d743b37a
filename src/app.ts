import Fastify, { LogController, type FastifyInstance, type FastifyError, type FastifyRequest } from 'fastify';
import swagger, { type SwaggerTransformObject } from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import cookie from '@fastify/cookie';
import { Ajv } from 'ajv';
import { ApiError, childField, databaseUnavailableError, errorBody } from './core/errors.js';
import { databaseUnavailable } from './db/database.js';
import { newId } from './core/ids.js';
import { ErrorSchema, OPTIONAL_BODY } from './http/schemas.js';
import type { AppContext } from './context.js';
import { ApiKeyVerifier } from './auth/api-keys.js';
import { systemRoutes } from './http/system-routes.js';
import { registerFeatures } from './features.js';
import { RawRoutes } from './http/raw-routes.js';

export type App = FastifyInstance;

const rawRoutesOf = new WeakMap<App, RawRoutes>();

/** How many requests the app's server is answering (its handlers started, its answers not ended). */
export function answering(app: App): number {
  return rawRoutesOf.get(app)?.answeringCount ?? 0;
}

/** The requests the app's server is still answering, and its open connections (a shutdown that takes long names them). */
export async function inProgress(app: App): Promise<string> {
  const connections = await new Promise<number>((resolve) => app.server.getConnections((err, n) => resolve(err ? -1 : n)));
  return `${rawRoutesOf.get(app)?.inProgress() ?? 'requests unknown'}; ${connections} connection(s) open`;
}

/** Builds the HTTP application: error vocabulary, auth, OpenAPI, and every feature's routes. */
export async function buildApp(ctx: AppContext): Promise<App> {
  const observe = (method: string, route: string, status: number, seconds: number) =>
    ctx.metrics.httpDuration.observe({ method, route, status }, seconds);
  const raw = new RawRoutes(observe);
  const app = Fastify({
    serverFactory: raw.serverFactory as never,
    loggerInstance: ctx.log,
    // Per-request access logs would double the log volume of the webhook hot path; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => newId('req'),
    bodyLimit: 10 * 1024 * 1024,
    trustProxy: ctx.config.trustProxy,
    schemaController: { compilersFactory: { buildValidator: buildValidator as never } },
  }) as unknown as FastifyInstance;

  app.addHook('onResponse', (req, reply, done) => {
    observe(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
    done();
  });
  acceptEmptyJsonBodies(app);
  defaultOptionalBodies(app);
  app.addSchema(ErrorSchema);
  await app.register(cookie);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'dmgate', version: '1', description: 'Gateway and agent inbox for TikTok Business Messaging' },
      components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'dmg_… API key' } } },
      security: [{ apiKey: [] }],
    },
    refResolver: { buildLocalReference: (json, _base, _frag, i) => String(json.$id ?? `def-${i}`) },
    transformObject: (doc) => ('openapiObject' in doc ? optionalBodies(doc.openapiObject as OpenApiPaths) : doc.swaggerObject) as ReturnType<SwaggerTransformObject>,
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  app.setErrorHandler((err: FastifyError | ApiError, req, reply) => {
    const apiErr = toApiError(err);
    if (apiErr.status >= 500) req.log.error({ err }, 'request failed');
    for (const [k, v] of Object.entries(apiErr.headers)) reply.header(k, v);
    void reply.code(apiErr.status).send(errorBody(apiErr, req.id));
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send(errorBody(new ApiError('not_found', `no route for ${req.method} ${req.url.split('?')[0]}`), req.id));
  });

  const keys = new ApiKeyVerifier(ctx.database);
  app.decorate('apiKeys', keys);
  await app.register(systemRoutes(ctx));
  await registerFeatures(app, ctx, keys, raw);
  rawRoutesOf.set(app, raw);
  return app;
}

type OpenApiPaths = { paths?: Record<string, Record<string, { requestBody?: { required?: boolean; content?: Record<string, { schema?: Record<string, unknown> }> } }>> };

/**
 * A route whose body schema says OPTIONAL_BODY takes no body as an empty one ({}): its schema, with
 * its defaults, then applies as to any body. (Fastify validates a missing body against the schema.)
 */
function defaultOptionalBodies(app: App): void {
  const emptyBody = async (req: FastifyRequest) => { req.body ??= {}; };
  app.addHook('onRoute', (route) => {
    if (!(route.schema?.body as Record<string, unknown> | undefined)?.[OPTIONAL_BODY]) return;
    route.preValidation = [emptyBody, ...[route.preValidation ?? []].flat()] as typeof route.preValidation;
  });
}

/** @fastify/swagger marks every request body required; one that says OPTIONAL_BODY is not (defaultOptionalBodies). */
function optionalBodies<T extends OpenApiPaths>(doc: T): T {
  for (const ops of Object.values(doc.paths ?? {})) {
    for (const op of Object.values(ops)) {
      const schema = op.requestBody?.content?.['application/json']?.schema;
      if (schema?.[OPTIONAL_BODY]) op.requestBody!.required = false;
    }
  }
  return doc;
}

/**
 * Many HTTP clients send `Content-Type: application/json` on every request, bodiless actions
 * (`/resolve`, `/retry`) included. An empty body is then no body, as it is without the header: a
 * route that needs one still answers that its body is missing, through its schema. Plain text is
 * not taken for JSON: such a body is refused as the wrong media type instead of failing the schema.
 */
function acceptEmptyJsonBodies(app: App): void {
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (body.length === 0) done(null, undefined);
    else json(req, body as string, done);
  });
}

/**
 * Request validation for every encapsulation context (contexts that add shared schemas get their
 * own compiler, built here too). Query strings, params and headers arrive as text and need
 * coercion ("20" -> 20); JSON bodies have types, and coercing them would silently turn
 * {"text": 123} into "123". Unknown body fields are refused, never silently dropped.
 */
function buildValidator(externalSchemas: Record<string, object> = {}) {
  const options = { useDefaults: true, removeAdditional: false as const, allErrors: false, strict: false };
  const body = new Ajv({ ...options, coerceTypes: false });
  const text = new Ajv({ ...options, coerceTypes: 'array' });
  for (const schema of Object.values(externalSchemas)) {
    body.addSchema(schema);
    text.addSchema(schema);
  }
  return ({ schema, httpPart }: { schema: object; httpPart?: string }) => (httpPart === 'body' ? body : text).compile(schema);
}

/**
 * The field a schema error is about, named as the route handlers' own checks name theirs, and as
 * the caller wrote it: `template.buttons[0].title`, `limit`. Ajv reports a missing property at its
 * parent object; this names the property itself.
 */
function fieldOf(error: NonNullable<FastifyError['validation']>[number]): string | undefined {
  const path: (string | number)[] = error.instancePath.split('/').slice(1).map((p) => (/^\d+$/.test(p) ? Number(p) : p));
  if (error.keyword === 'required') path.push(String((error.params as { missingProperty?: unknown }).missingProperty));
  if (error.keyword === 'additionalProperties') path.push(String((error.params as { additionalProperty?: unknown }).additionalProperty));
  return path.reduce<string>(childField, '') || undefined;
}

/** A schema error's message about the field as the caller named it, not Ajv's `body/template/title`. */
function validationMessage(error: NonNullable<FastifyError['validation']>[number], subject: string, context: string | undefined): string {
  switch (error.keyword) {
    case 'required': return `${subject} is required`;
    case 'additionalProperties': return context === 'querystring' ? `${subject} is not a query parameter of this endpoint` : `${subject} is not a known field`;
    case 'type': if (!error.instancePath && subject === 'body') return 'the body must be a JSON object'; break;
  }
  return `${subject} ${(error.message ?? 'is not valid').replace('must NOT', 'must not')}`;
}

/**
 * The values a closed field allows, when that is what failed: Ajv says only "must be equal to one
 * of the allowed values" (an enum), or, for a union of literals (`type`: text, image, …), "must be
 * equal to constant" once per literal and then that the anyOf failed.
 */
function allowedValues(errors: NonNullable<FastifyError['validation']>): string[] | null {
  if (errors[0]?.keyword === 'enum') return ((errors[0].params as { allowedValues?: unknown[] }).allowedValues ?? []).map(String);
  const last = errors[errors.length - 1];
  const consts = errors.slice(0, -1);
  if (last?.keyword !== 'anyOf' || !consts.length) return null;
  if (!consts.every((e) => e.keyword === 'const' && e.instancePath === last.instancePath)) return null;
  return consts.map((e) => String((e.params as { allowedValue?: unknown }).allowedValue));
}

function toApiError(err: FastifyError | ApiError): ApiError {
  if (err instanceof ApiError) return err;
  if (databaseUnavailable(err)) return databaseUnavailableError();
  const fe = err as FastifyError;
  if (fe.validation) {
    const first = fe.validation[0];
    if (!first) return new ApiError('invalid_request', fe.message);
    const field = fieldOf(first);
    const subject = field ?? fe.validationContext ?? 'body';
    const allowed = allowedValues(fe.validation);
    if (allowed) return new ApiError('invalid_request', `${subject} must be one of: ${allowed.join(', ')}`, { field, rule: 'enum', allowed });
    return new ApiError('invalid_request', validationMessage(first, subject, fe.validationContext), { ...(field ? { field } : {}), rule: first.keyword });
  }
  switch (fe.statusCode) {
    case 413: return new ApiError('payload_too_large', 'the request body is too large');
    case 415: return new ApiError('invalid_request', 'the body must be JSON, sent with Content-Type: application/json', { rule: 'content_type' });
    case 400: return new ApiError('invalid_request', fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || /JSON/.test(fe.message) ? 'the body is not valid JSON' : fe.message);
    case 404: return new ApiError('not_found', fe.message);
    default:
      if (fe.statusCode && fe.statusCode < 500) return new ApiError('invalid_request', fe.message);
      return new ApiError('internal_error', 'internal error');
  }
}

declare module 'fastify' {
  interface FastifyInstance { apiKeys: ApiKeyVerifier }
}
