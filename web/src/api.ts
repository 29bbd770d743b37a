import type { Page } from './types';

/** A refusal from the API in its one error shape: `{ error: { code, message, request_id, details } }`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
    readonly retryAfter: number | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

let csrfToken = '';
let onUnauthorized: (() => void) | null = null;

export const setCsrfToken = (token: string) => { csrfToken = token; };
/** Called when a request answers 401: the session ended (signed out elsewhere, disabled, expired). */
export const setUnauthorizedHandler = (fn: (() => void) | null) => { onUnauthorized = fn; };

export interface RequestOptions { signal?: AbortSignal; headers?: Record<string, string>; quiet401?: boolean }

export async function api<T>(method: string, path: string, body?: unknown, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json', ...opts.headers };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD') headers['x-csrf-token'] = csrfToken;
  let res: Response;
  try {
    res = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body), signal: opts.signal });
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    throw new ApiError(0, 'network_error', 'dmgate is not reachable; check your connection');
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let data: unknown = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) {
    const e = (data as { error?: { code?: string; message?: string; details?: Record<string, unknown> } } | null)?.error;
    const retry = res.headers.get('retry-after');
    if (res.status === 401 && !opts.quiet401) onUnauthorized?.();
    throw new ApiError(res.status, e?.code ?? 'http_' + res.status, e?.message ?? `${res.status} ${res.statusText}`, e?.details ?? {}, retry ? Number(retry) : null);
  }
  return data as T;
}

export const qs = (params: Record<string, string | number | boolean | null | undefined>) => {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, String(v));
  const s = u.toString();
  return s ? '?' + s : '';
};

/** Follows next_cursor to the end, handing each page over as it arrives. */
export async function listAll<T>(path: string, params: Record<string, string | number | undefined>, onPage?: (rows: T[], requestedAt: number) => void, opts: { signal?: AbortSignal; maxPages?: number } = {}): Promise<T[]> {
  const all: T[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < (opts.maxPages ?? 1000); i++) {
    const at = performance.now();
    const page: Page<T> = await api<Page<T>>('GET', path + qs({ ...params, cursor: cursor ?? undefined }), undefined, { signal: opts.signal });
    all.push(...page.data);
    onPage?.(page.data, at);
    if (!page.next_cursor) break;
    cursor = page.next_cursor;
  }
  return all;
}

export function errorText(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}
