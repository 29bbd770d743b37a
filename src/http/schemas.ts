import { Type, type TProperties, type TSchema } from '@sinclair/typebox';

/** Shared route-schema pieces, so every list and error looks the same in the OpenAPI document. */
export const ErrorSchema = Type.Object({
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    request_id: Type.String(),
    details: Type.Record(Type.String(), Type.Unknown()),
  }),
}, { $id: 'Error' });

/**
 * A query string's schema. Closed, as bodies are: a misspelt filter (`?statsu=open`) is refused
 * with its name instead of being ignored, which would answer with everything it was meant to filter.
 */
export const Query = <T extends TProperties>(properties: T) => Type.Object(properties, { additionalProperties: false });

/** Marks a body schema whose route also takes no body (as an empty one): the OpenAPI document says it is optional. */
export const OPTIONAL_BODY = 'x-optional-body';

export const ListQuery = Query({
  cursor: Type.Optional(Type.String()),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
});

export const listOf = <T extends TSchema>(item: T) =>
  Type.Object({ data: Type.Array(item), next_cursor: NullableString() });

export const IdParams = Type.Object({ id: Type.String() });

/** Null first: with Ajv's type coercion a null would otherwise be coerced into the first branch ("" for strings). */
export const Nullable = <T extends TSchema>(s: T) => Type.Union([Type.Null(), s]);

interface Scalars { string: string; integer: number; boolean: boolean }

/**
 * A scalar or null in a response, as a type list. fast-json-stringify writes an anyOf (Nullable) by
 * running Ajv on the value against each branch, for every such value of every response, and
 * compiles those validators on the first response that needs them: tens of milliseconds of a new
 * process's first requests. A type list it writes inline. (Not for request schemas: there Ajv's
 * coercion treats a type list differently, see Nullable.)
 */
export const NullableScalar = <K extends keyof Scalars>(type: K, options: { description?: string; format?: 'date-time' } = {}) =>
  Type.Unsafe<Scalars[K] | null>({ type: [type, 'null'], ...options });

export const NullableString = (description?: string) => NullableScalar('string', description === undefined ? {} : { description });

/**
 * Standard error responses a route can produce; merged into each route's `response`. Every such
 * route reads or writes the database, so each may also answer 503 `unavailable` (app.ts) while the
 * database cannot be reached.
 */
export const errorResponses = (...codes: number[]) =>
  Object.fromEntries([...codes, 503].map((c) => [c, { $ref: 'Error#' }]));
