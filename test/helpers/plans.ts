import { sql, type Compilable, type CompiledQuery, type Kysely } from 'kysely';
import type { Database, Executor } from '../../src/db/database.js';
import type { DB } from '../../src/db/schema.js';

export interface PlanNode { 'Node Type': string; 'Relation Name'?: string; 'Index Name'?: string; 'Index Cond'?: string; 'Recheck Cond'?: string; Plans?: PlanNode[] }

/**
 * Every scan of these tables in a plan: [index (for a bitmap scan, its index's) or scan type, the
 * condition it reads by].
 */
export function tableScans(node: PlanNode, tables: string[], out: [string, string][] = []): [string, string][] {
  if (tables.includes(node['Relation Name'] ?? '') && node['Node Type'].endsWith('Scan')) {
    const index = node['Index Name'] ?? node.Plans?.find((p) => p['Index Name'])?.['Index Name'] ?? node['Node Type'];
    out.push([index, node['Index Cond'] ?? node['Recheck Cond'] ?? '']);
  }
  for (const child of node.Plans ?? []) tableScans(child, tables, out);
  return out;
}

const literal = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? `array[${v.map(literal).join(', ')}]::text[]`
  : typeof v === 'number' ? String(v) : `'${String(v).replace(/'/g, "''")}'`);

/**
 * The plans Postgres may use for a statement run as a prepared statement (as the gateway runs its
 * statements): for these values, and the generic plan it may settle on after a few runs.
 */
export async function postgresPlans(db: Kysely<DB>, query: { sql: string; parameters: readonly unknown[] }): Promise<{ mode: string; plan: PlanNode }[]> {
  return db.connection().execute((conn) => plansOn(conn, query));
}

/** The same, on one connection as it is (a transaction's, with its settings). */
export async function plansOn(conn: Executor, query: { sql: string; parameters: readonly unknown[] }): Promise<{ mode: string; plan: PlanNode }[]> {
  await sql.raw(`prepare plan_check as ${query.sql}`).execute(conn);
  const out: { mode: string; plan: PlanNode }[] = [];
  try {
    for (const mode of ['force_custom_plan', 'force_generic_plan']) {
      await sql.raw(`set plan_cache_mode = ${mode}`).execute(conn);
      const args = query.parameters.length ? `(${query.parameters.map(literal).join(', ')})` : '';
      const { rows } = await sql.raw<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(`explain (format json) execute plan_check${args}`).execute(conn);
      out.push({ mode, plan: rows[0]['QUERY PLAN'][0].Plan });
    }
  } finally {
    await sql`deallocate plan_check`.execute(conn);
    await sql`reset plan_cache_mode`.execute(conn);
  }
  return out;
}

/** Every node type of a plan, depth first ('Limit', 'Sort', 'Index Scan', …). */
export function nodeTypes(node: PlanNode, out: string[] = []): string[] {
  out.push(node['Node Type']);
  for (const child of node.Plans ?? []) nodeTypes(child, out);
  return out;
}

/**
 * The indexes a statement's plan reads these tables by, or 'full scan' (Postgres: its custom and
 * generic plans). SQLite names a table by its alias in the statement, so pass aliases as well.
 */
export async function indexesUsed(database: Database, query: Compilable<unknown> | CompiledQuery<unknown>, tables: string[]): Promise<string[]> {
  const { sql: text, parameters } = 'compile' in query ? query.compile() : query;
  if (database.dialect === 'sqlite') {
    const rows = database.sqlite!.prepare(`explain query plan ${text}`).all(...parameters.map(() => null)) as { detail: string }[];
    return rows.map((r) => /^(?:SEARCH|SCAN) (\w+)\b(?: USING (?:COVERING )?INDEX (\w+))?/.exec(r.detail))
      .filter((m) => m !== null && tables.includes(m[1])).map((m) => m![2] ?? 'full scan');
  }
  return (await postgresPlans(database.db, { sql: text, parameters }))
    .flatMap(({ plan }) => tableScans(plan, tables).map(([index]) => (index === 'Seq Scan' ? 'full scan' : index)));
}
