/** The closed error vocabulary of the HTTP API (DESIGN §5). */
export const ERROR_STATUS = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  window_closed: 422,
  quota_exhausted: 422,
  text_too_long: 422,
  media_unsupported: 422,
  media_too_large: 422,
  image_not_allowed: 422,
  account_needs_reauth: 422,
  account_restricted: 422,
  account_disconnected: 422,
  daily_cap_reached: 422,
  conversation_not_open: 422,
  template_invalid: 422,
  rate_limited: 429,
  internal_error: 500,
  provider_error: 502,
  unavailable: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class ApiError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
    this.status = ERROR_STATUS[code];
  }
}

export const notFound = (what: string, id?: string) =>
  new ApiError('not_found', id ? `${what} ${id} does not exist` : `${what} does not exist`, id ? { id } : {});

/**
 * A field's name in `details.field`, as the caller wrote it: `key` under `parent` ('' at the top),
 * an array index in brackets: `template.buttons[0].title`.
 */
export const childField = (parent: string, key: string | number): string =>
  (typeof key === 'number' ? `${parent}[${key}]` : parent ? `${parent}.${key}` : key);

export const invalid = (message: string, details: Record<string, unknown> = {}) =>
  new ApiError('invalid_request', message, details);

/** For a request whose database could not be reached (db/database.ts, databaseUnavailable): try again shortly. */
export const databaseUnavailableError = () =>
  new ApiError('unavailable', 'the database is unavailable; try again shortly', {}, { 'retry-after': '1' });

export function errorBody(err: ApiError, requestId: string) {
  return { error: { code: err.code, message: err.message, request_id: requestId, details: err.details } };
}
