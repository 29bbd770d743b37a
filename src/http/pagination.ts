import type { SelectQueryBuilder } from 'kysely';
import { invalid } from '../core/errors.js';
import { isId } from '../core/ids.js';

/** Opaque cursors: the last row's sort key, base64url-encoded. Ascending by a unique key. */
export const encodeCursor = (key: string | number) => Buffer.from(String(key)).toString('base64url');

/**
 * The id a cursor of ours holds. Anything else is refused: decoded as it came, a cursor that was
 * cut or made up compared as some string and gave a wrong page instead of an error.
 */
export function decodeCursor(cursor: string): string {
  const key = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!isId(key) || encodeCursor(key) !== cursor) throw invalid('cursor is not valid', { field: 'cursor' });
  return key;
}

export function cursorFilter<QB extends SelectQueryBuilder<any, any, any>>(qb: QB, column: string, cursor: string | undefined, direction: 'asc' | 'desc' = 'asc'): QB {
  if (!cursor) return qb;
  return qb.where(column, direction === 'asc' ? '>' : '<', decodeCursor(cursor)) as QB;
}

/** Rows fetched with limit+1: the extra row says there is a next page. */
export function pageOf<R, V>(rows: R[], limit: number, key: (r: R) => string | number, view: (r: R) => V): { data: V[]; next_cursor: string | null } {
  const more = rows.length > limit;
  const page = more ? rows.slice(0, limit) : rows;
  return { data: page.map(view), next_cursor: more && page.length ? encodeCursor(key(page[page.length - 1])) : null };
}
