import type { SelectQueryBuilder } from 'kysely';

/** Opaque cursors: the last row's sort key, base64url-encoded. Ascending by a unique key. */
export const encodeCursor = (key: string | number) => Buffer.from(String(key)).toString('base64url');
export const decodeCursor = (cursor: string) => Buffer.from(cursor, 'base64url').toString('utf8');

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
