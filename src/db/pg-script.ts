import { randomBytes } from 'node:crypto';
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

/** A literal, a quoted identifier, a comment, or a parameter `$n` (group 1). */
const TOKEN = /'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|\$([0-9]+)/g;

/** The statement's text with each `$n` outside literals, quoted identifiers and comments replaced by its value as a literal. */
export function inlineParameters(client: Pick<pg.ClientBase, 'escapeLiteral'>, query: CompiledQuery): string {
  const { sql: text, parameters } = query;
  return text.replace(TOKEN, (token: string, n: string | undefined) => {
    if (n === undefined) return token;
    const i = Number(n);
    if (i < 1 || i > parameters.length) throw new Error(`inlineParameters: $${i} has no value`);
    return literal(client, parameters[i - 1]);
  });
}

/** As a bound parameter would be: an untyped literal (the statement's casts and context type it), or null. */
function literal(client: Pick<pg.ClientBase, 'escapeLiteral'>, value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return value.length > DOLLAR_QUOTE_MIN ? dollarQuoted(client, value) : client.escapeLiteral(value);
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

/** Above this length a string goes dollar-quoted: the driver's escaping builds the literal a character at a time. */
const DOLLAR_QUOTE_MIN = 256;

/** `$tag$…$tag$`, a tag the string does not contain: nothing inside needs escaping. */
function dollarQuoted(client: Pick<pg.ClientBase, 'escapeLiteral'>, value: string): string {
  if (value.includes('\u0000')) return client.escapeLiteral(value); // (Postgres refuses it either way; let it say so)
  for (let k = 0; k < 4; k++) {
    const tag = `$q${randomBytes(6).toString('hex')}$`;
    if (!value.includes(tag)) return `${tag}${value}${tag}`;
  }
  return client.escapeLiteral(value);
}
