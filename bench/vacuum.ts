import { sql } from 'kysely';
import { autovacuumState } from '../src/db/autovacuum-check.js';
import type { Database } from '../src/db/database.js';

/** PostgreSQL's defaults: autovacuum_{vacuum,vacuum_insert,analyze}_{threshold,scale_factor}. */
const VACUUM_AT = { rows: 50, share: 0.2 };
const VACUUM_INSERTS_AT = { rows: 1000, share: 0.2 };
const ANALYZE_AT = { rows: 50, share: 0.1 };

interface TableCounts { relname: string; reltuples: number; n_dead_tup: number; n_ins_since_vacuum: number; n_mod_since_analyze: number }

/**
 * A PostgreSQL with autovacuum off (this machine's is) never reclaims the dead row versions that
 * every reply and every DM leaves (a message queued → sending → sent, a webhook pending → done, a
 * conversation updated at each), nor refreshes the planner's statistics: after bench:outbound's
 * drain, conversations held 12 dead versions per live row. A production server vacuums (the
 * default; the gateway warns at start if not), so for such a server the benches do what autovacuum
 * would before each phase, about as often as its default naptime (1 min): vacuum the tables past its
 * default thresholds of dead or inserted rows, analyze those past its threshold of changed rows.
 * Prints what was done, as `[label]   (…)`; nothing when there is nothing to do (SQLite, or
 * autovacuum on).
 */
export async function vacuumLikeAutovacuum(db: Database, label: string): Promise<void> {
  const done = await vacuumAsNeeded(db);
  if (done) console.log(`[${label}]   ${done}`);
}

async function vacuumAsNeeded(db: Database): Promise<string | null> {
  if (db.dialect !== 'postgres') return null;
  if ((await autovacuumState(db)).autovacuum) return null;
  const { rows } = await sql<TableCounts>`select s.relname, greatest(c.reltuples, 0)::float8 as reltuples, s.n_dead_tup::float8 as n_dead_tup,
      s.n_ins_since_vacuum::float8 as n_ins_since_vacuum, s.n_mod_since_analyze::float8 as n_mod_since_analyze
    from pg_stat_user_tables s join pg_class c on c.oid = s.relid
    where s.schemaname = current_schema() order by s.n_dead_tup desc`.execute(db.db);
  const past = (n: number, at: { rows: number; share: number }, t: TableCounts) => n > at.rows + at.share * t.reltuples;
  const vacuum = rows.filter((t) => past(t.n_dead_tup, VACUUM_AT, t) || past(t.n_ins_since_vacuum, VACUUM_INSERTS_AT, t));
  const analyze = rows.filter((t) => past(t.n_mod_since_analyze, ANALYZE_AT, t));
  if (vacuum.length + analyze.length === 0) return '(this PostgreSQL has autovacuum off: no table of the bench\'s was past autovacuum\'s thresholds yet)';
  const t0 = performance.now();
  for (const t of rows) {
    const v = vacuum.includes(t);
    const a = analyze.includes(t);
    if (v || a) await sql`${sql.raw(v ? (a ? 'vacuum (analyze)' : 'vacuum') : 'analyze')} ${sql.id(t.relname)}`.execute(db.db);
  }
  const ms = Math.round(performance.now() - t0);
  const most = vacuum.filter((t) => t.n_dead_tup > 0).slice(0, 3).map((t) => `${t.n_dead_tup.toLocaleString('en')} in ${t.relname}`);
  return `(this PostgreSQL has autovacuum off: the bench did what autovacuum would, in ${ms} ms: vacuumed ${vacuum.length} tables `
    + `(dead row versions: ${most.join(', ') || 'none'}), analyzed ${analyze.length})`;
}
