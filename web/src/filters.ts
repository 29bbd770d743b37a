import type { Conversation } from './types';

export type View = 'mine' | 'unassigned' | 'all';
export interface Filters { view: View; status: 'open' | 'resolved'; account: string; q: string }

export const DEFAULT_FILTERS: Filters = { view: 'all', status: 'open', account: '', q: '' };

export function loadFilters(): Filters {
  try {
    const raw = sessionStorage.getItem('dmgate.filters');
    return raw ? { ...DEFAULT_FILTERS, ...(JSON.parse(raw) as Partial<Filters>), q: '' } : DEFAULT_FILTERS;
  } catch { return DEFAULT_FILTERS; }
}
export function saveFilters(f: Filters): void {
  try { sessionStorage.setItem('dmgate.filters', JSON.stringify({ ...f, q: '' })); } catch { /* private mode */ }
}

const t = (iso: string | null) => (iso ? Date.parse(iso) : 0);

/**
 * Urgency order: the customer waiting longest first (oldest unanswered customer message), then
 * the rest by latest activity. Resolved conversations: latest activity first.
 */
export function byUrgency(a: Conversation, b: Conversation): number {
  const wa = a.first_unanswered_at;
  const wb = b.first_unanswered_at;
  if (wa && wb) return t(wa) - t(wb) || a.id.localeCompare(b.id);
  if (wa) return -1;
  if (wb) return 1;
  return t(b.last_message_at) - t(a.last_message_at) || b.id.localeCompare(a.id);
}
const byRecent = (a: Conversation, b: Conversation) => t(b.last_message_at) - t(a.last_message_at) || b.id.localeCompare(a.id);

export function matches(c: Conversation, q: string): boolean {
  if (!q) return true;
  const needle = q.toLowerCase().replace(/^@/, '');
  return (c.contact.username ?? '').toLowerCase().includes(needle) || (c.contact.display_name ?? '').toLowerCase().includes(needle);
}

export function select(all: Iterable<Conversation>, f: Filters, me: string): { rows: Conversation[]; counts: Record<View, number> } {
  const rows: Conversation[] = [];
  const counts: Record<View, number> = { mine: 0, unassigned: 0, all: 0 };
  for (const c of all) {
    if (c.status !== f.status) continue;
    if (f.account && c.account_id !== f.account) continue;
    if (!matches(c, f.q)) continue;
    const mine = c.assignee_id === me;
    const unassigned = c.assignee_id === null;
    counts.all++;
    if (mine) counts.mine++;
    if (unassigned) counts.unassigned++;
    if (f.view === 'mine' && !mine) continue;
    if (f.view === 'unassigned' && !unassigned) continue;
    rows.push(c);
  }
  rows.sort(f.status === 'open' ? byUrgency : byRecent);
  return { rows, counts };
}
