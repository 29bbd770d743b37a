import type { CompiledQuery } from 'kysely';
import type pg from 'pg';

/**
 * Postgres: several statements in one round trip. Kysely sends each statement with the extended
 * protocol, one statement per round trip, and on a busy server a round trip costs more than the
 * work (the client's socket write wakes a server process that takes the core from it). The simple
 * protocol runs a whole script per round trip, each statement with its own snapshot (as separate
 * statements would), but takes no parameters: the values are written into the text as literals,
 * escaped by the driver.
 *
 * A script that fails stops at the failing statement; one that began a transaction leaves it
 * aborted, for the caller to roll back.
 */
export async function runScript(client: pg.ClientBase, statements: (CompiledQuery | string)[]): Promise<Record<string, unknown>[][]> {
  const text = statements.map((s) => (typeof s === 'string' ? s : inlineParameters(client, s))).join(';\n');
  // (A string alone, no values array: pg then uses the simple protocol.)
  const result = (await client.query(text)) as pg.QueryResult | pg.QueryResult[];
  const results = Array.isArray(result) ? result : [result];
  return results.map((r) => r.rows ?? []);
}

/** The statement's text with each `$n` outside literals, quoted identifiers and comments replaced by its value as a literal. */
export function inlineParameters(client: Pick<pg.ClientBase, 'escapeLiteral'>, query: CompiledQuery): string {
  const { sql: text, parameters } = query;
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    let end = i + 1;
    if (c === "'" || c === '"') {
      // To the closing quote; a doubled quote is an escaped one.
      while (end < text.length && !(text[end] === c && text[end + 1] !== c)) end += text[end] === c ? 2 : 1;
      end++;
    } else if (c === '-' && text[i + 1] === '-') {
      while (end < text.length && text[end] !== '\n') end++;
    } else if (c === '$' && /[0-9]/.test(text[i + 1] ?? '')) {
      while (end < text.length && /[0-9]/.test(text[end])) end++;
      const n = Number(text.slice(i + 1, end));
      if (n < 1 || n > parameters.length) throw new Error(`inlineParameters: $${n} has no value`);
      out += literal(client, parameters[n - 1]);
      i = end;
      continue;
    }
    out += text.slice(i, end);
    i = end;
  }
  return out;
}

/** As a bound parameter would be: an untyped literal (the statement's casts and context type it), or null. */
function literal(client: Pick<pg.ClientBase, 'escapeLiteral'>, value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return client.escapeLiteral(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`inlineParameters: ${value} is not a number Postgres takes`);
    return `'${value}'`;
  }
  if (typeof value === 'bigint' || typeof value === 'boolean') return `'${value}'`;
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) {
    // Postgres' array input syntax, every element quoted (backslash and quote escaped within).
    return client.escapeLiteral(`{${value.map((v) => `"${v.replace(/[\\"]/g, '\\$&')}"`).join(',')}}`);
  }
  throw new Error(`inlineParameters: cannot write a ${typeof value} as a literal`);
}
