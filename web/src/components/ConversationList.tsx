import { memo, useEffect, useLayoutEffect, useRef, useState } from 'react';
import { linkClick } from '../router';
import { accounts, users } from '../store';
import { duration, hoursLeft, useNow } from '../time';
import type { Filters, View } from '../filters';
import type { Account, Conversation } from '../types';
import type { LoadState } from '../live';
import { cls, contactName, hue, initials } from '../util';

export const ROW_HEIGHT = 76;
const OVERSCAN = 8;
const STEP = 4;

interface Props {
  rows: Conversation[];
  counts: Record<View, number>;
  selectedId: string | null;
  filters: Filters;
  onFilters(f: Filters): void;
  slaMs: number;
  load: LoadState;
  onLoadMore(): void;
  accountList: Account[];
  searching: boolean;
  searchRef: React.RefObject<HTMLInputElement | null>;
}

/** The conversation list: filters, then a windowed list (only visible rows are in the DOM). */
export function ConversationList(p: Props) {
  const { rows, filters, onFilters } = p;
  const scrollRef = useRef<HTMLDivElement>(null);
  // The first row in view, in steps of 4 rows: scrolling within a step renders nothing new.
  const [firstRow, setFirstRow] = useState(0);
  const [height, setHeight] = useState(800);
  const now = useNow();

  useLayoutEffect(() => {
    const el = scrollRef.current;
    if (!el) return;
    setHeight(el.clientHeight);
    const ro = new ResizeObserver(() => setHeight(el.clientHeight));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  // Keep the selected row in view when it changes (j/k, a link, a new order).
  const selectedIndex = p.selectedId ? rows.findIndex((r) => r.id === p.selectedId) : -1;
  useEffect(() => {
    const el = scrollRef.current;
    if (!el || selectedIndex < 0) return;
    const top = selectedIndex * ROW_HEIGHT;
    if (top < el.scrollTop) el.scrollTop = top;
    else if (top + ROW_HEIGHT > el.scrollTop + el.clientHeight) el.scrollTop = top + ROW_HEIGHT - el.clientHeight;
  }, [selectedIndex, p.selectedId]);

  // Back to the top when the filter changes.
  useEffect(() => { if (scrollRef.current) scrollRef.current.scrollTop = 0; }, [filters.view, filters.status, filters.account, filters.q]);

  const start = Math.max(0, firstRow - OVERSCAN);
  const end = Math.min(rows.length, firstRow + Math.ceil(height / ROW_HEIGHT) + STEP + OVERSCAN);
  const visible = rows.slice(start, end);
  const loadingOpen = filters.status === 'open' && p.load.open === 'loading';
  const resolvedMore = filters.status === 'resolved' && (p.load.resolved === 'more' || p.load.resolved === 'loading' || p.load.resolved === 'error');

  const views: [View, string][] = [['mine', 'Mine'], ['unassigned', 'Unassigned'], ['all', 'All']];
  return (
    <section className="list-pane" aria-label="Conversations">
      <div className="filters">
        <div className="segmented" role="group" aria-label="Show">
          {views.map(([v, label]) => (
            <button key={v} type="button" aria-pressed={filters.view === v} onClick={() => onFilters({ ...filters, view: v })}>
              {label} <span className="count" aria-label={`${p.counts[v]} conversations`}>{p.counts[v] >= 10_000 ? `${Math.floor(p.counts[v] / 1000)}k` : p.counts[v]}</span>
            </button>
          ))}
        </div>
        <div className="filter-row">
          <div className="segmented small" role="group" aria-label="Status">
            {(['open', 'resolved'] as const).map((s) => (
              <button key={s} type="button" aria-pressed={filters.status === s} onClick={() => onFilters({ ...filters, status: s })}>
                {s === 'open' ? 'Open' : 'Resolved'}
              </button>
            ))}
          </div>
          <label className="sr-only" htmlFor="account-filter">Account</label>
          <select id="account-filter" value={filters.account} onChange={(e) => onFilters({ ...filters, account: e.target.value })}>
            <option value="">All accounts</option>
            {p.accountList.map((a) => <option key={a.id} value={a.id}>{a.username ? '@' + a.username : a.display_name ?? a.external_id}</option>)}
          </select>
        </div>
        <div className="search">
          <label className="sr-only" htmlFor="search">Search contacts</label>
          <input id="search" ref={p.searchRef} type="search" placeholder="Search contacts  ( / )" autoComplete="off"
            value={filters.q} onChange={(e) => onFilters({ ...filters, q: e.target.value })} />
        </div>
      </div>
      <p className="list-summary" aria-live="polite">
        {loadingOpen && rows.length === 0 ? 'Loading conversations…'
          : `${rows.length.toLocaleString()} ${filters.status} conversation${rows.length === 1 ? '' : 's'}${filters.status === 'open' ? ', most urgent first' : ''}${p.searching ? ' · searching…' : ''}`}
      </p>
      <div className="list-scroll" ref={scrollRef} onScroll={(e) => setFirstRow(Math.floor(e.currentTarget.scrollTop / ROW_HEIGHT / STEP) * STEP)} data-testid="conversation-list">
        {rows.length === 0 && !loadingOpen && (
          <p className="empty">{filters.q ? 'No contact matches your search.' : filters.view === 'mine' ? 'Nothing assigned to you.' : filters.status === 'open' ? 'No open conversations. New DMs appear here at once.' : 'No resolved conversations loaded.'}</p>
        )}
        <ul className="rows" aria-label={`${rows.length} conversations`} style={{ height: rows.length * ROW_HEIGHT }}>
          {visible.map((c, i) => (
            <Row key={c.id} c={c} index={start + i} total={rows.length} selected={c.id === p.selectedId} now={now} slaMs={p.slaMs}
              assignee={c.assignee_id ? users.name(c.assignee_id) : null} account={accounts.label(c.account_id)} />
          ))}
        </ul>
        {resolvedMore && (
          <div className="load-more">
            <button type="button" onClick={p.onLoadMore} disabled={p.load.resolved === 'loading'}>
              {p.load.resolved === 'loading' ? 'Loading…' : p.load.resolved === 'error' ? 'Retry loading' : 'Load older resolved conversations'}
            </button>
          </div>
        )}
      </div>
    </section>
  );
}

interface RowProps { c: Conversation; index: number; total: number; selected: boolean; now: number; slaMs: number; assignee: string | null; account: string }

const Row = memo(function Row({ c, index, total, selected, now, slaMs, assignee, account }: RowProps) {
  const name = contactName(c.contact);
  const waitingSince = c.first_unanswered_at ? Date.parse(c.first_unanswered_at) : null;
  const waited = waitingSince !== null ? now - waitingSince : 0;
  const late = waitingSince !== null && waited > slaMs;
  return (
    <li className="row-item" style={{ transform: `translateY(${index * ROW_HEIGHT}px)` }} aria-setsize={total} aria-posinset={index + 1}>
      <a href={`/c/${c.id}`} className={cls('row', selected && 'selected', c.status === 'resolved' && 'resolved')} aria-current={selected ? 'true' : undefined}
        onClick={(e) => linkClick(e, `/c/${c.id}`)} data-conversation-id={c.id} data-contact={c.contact.username ?? ''}>
        <span className="avatar" aria-hidden="true" style={{ background: `hsl(${hue(c.contact.id)} 45% 38%)` }}>{initials(c.contact.display_name || c.contact.username || '?')}</span>
        <span className="row-main">
          <span className="row-top">
            <span className="name">{name}</span>
            {waitingSince !== null
              ? <span className={cls('wait', late && 'late')} title={`Customer waiting since ${new Date(waitingSince).toLocaleString()}`}>
                  <span className="sr-only">{late ? 'Late: waiting ' : 'Waiting '}</span>{duration(waited)}
                </span>
              : c.last_message_at && <span className="when muted"><span className="sr-only">Last message </span>{duration(now - Date.parse(c.last_message_at))} ago</span>}
          </span>
          <span className="preview">{c.last_message_preview ?? ' '}</span>
          <span className="row-meta">
            <span className="acct">{account}</span>
            <WindowBadge c={c} now={now} />
            {assignee ? <span className="assignee" title={`Assigned to ${assignee}`}><span className="sr-only">Assigned to </span>{assignee}</span> : <span className="assignee none">Unassigned</span>}
          </span>
        </span>
      </a>
    </li>
  );
});

export function WindowBadge({ c, now }: { c: Conversation; now: number }) {
  const w = c.window;
  const expires = w.expires_at ? Date.parse(w.expires_at) : null;
  if (w.blocked === 'never_opened') return <span className="win closed">No window</span>;
  if (!w.open || (expires !== null && expires <= now)) return <span className="win closed">Window closed</span>;
  if (w.blocked === 'quota_exhausted' || w.quota_remaining === 0) return <span className="win closed">No replies left</span>;
  const left = expires !== null ? expires - now : null;
  return (
    <span className={cls('win', left !== null && left < 6 * 3600_000 && 'soon')} title="Time left to reply and replies left in TikTok's window">
      {left !== null ? `${hoursLeft(left)} left` : 'open'}{w.quota_limit !== null ? ` · ${w.quota_remaining}/${w.quota_limit}` : ''}
    </span>
  );
}
