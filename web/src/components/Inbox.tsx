import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import { getLoadState, loadMoreResolved, onLoadState, searchContacts } from '../live';
import { navigate, usePath } from '../router';
import { accounts, conversations, users } from '../store';
import { useSession } from '../session';
import { loadFilters, saveFilters, select, type Filters } from '../filters';
import { ConversationList } from './ConversationList';
import { Thread } from './Thread';
import { ContactPanel } from './ContactPanel';
import { ShortcutHelp } from './ShortcutHelp';
import { cls } from '../util';

const typing = (t: EventTarget | null) => t instanceof HTMLElement && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));

/** The inbox: list, open thread and contact panel; keyboard shortcuts j/k, r, e, a, /, ?. */
export function Inbox() {
  const { session } = useSession();
  const path = usePath();
  const selectedId = path.startsWith('/c/') ? decodeURIComponent(path.slice(3)) : null;
  const [filters, setFiltersState] = useState<Filters>(loadFilters);
  const setFilters = useCallback((f: Filters) => { setFiltersState(f); saveFilters(f); }, []);
  const convVersion = useSyncExternalStore(conversations.subscribe, conversations.getVersion);
  const usersVersion = useSyncExternalStore(users.subscribe, users.getVersion);
  const accountsVersion = useSyncExternalStore(accounts.subscribe, accounts.getVersion);
  const load = useSyncExternalStore(onLoadState, getLoadState);
  const [contactOpen, setContactOpen] = useState(() => window.matchMedia('(min-width: 1200px)').matches);
  const [help, setHelp] = useState(false);
  const [searching, setSearching] = useState(false);
  const searchRef = useRef<HTMLInputElement>(null);
  const me = session.user.id;

  const { rows, counts } = useMemo(
    () => select(conversations.byId.values(), filters, me),
    [convVersion, filters, me],
  );
  const accountList = useMemo(() => [...accounts.byId.values()], [accountsVersion]);
  void usersVersion; // rows show assignee names: re-render when users load

  // Resolved conversations load on demand.
  useEffect(() => { if (filters.status === 'resolved' && load.resolved === 'idle') void loadMoreResolved(); }, [filters.status, load.resolved]);

  // Search also asks the server, for conversations not loaded (older resolved ones).
  useEffect(() => {
    const q = filters.q.trim();
    if (q.length < 2) return;
    const ctl = new AbortController();
    const t = setTimeout(() => {
      setSearching(true);
      searchContacts(q, ctl.signal).catch(() => undefined).finally(() => setSearching(false));
    }, 300);
    return () => { clearTimeout(t); ctl.abort(); setSearching(false); };
  }, [filters.q]);

  // The tab title counts customers waiting for an answer.
  useEffect(() => {
    let waiting = 0;
    for (const c of conversations.byId.values()) if (c.status === 'open' && c.first_unanswered_at) waiting++;
    document.title = `${waiting ? `(${waiting}) ` : ''}Inbox · dmgate`;
  }, [convVersion]);
  useEffect(() => () => { document.title = 'dmgate'; }, []);

  const move = useCallback((delta: number) => {
    if (!rows.length) return;
    const i = selectedId ? rows.findIndex((r) => r.id === selectedId) : -1;
    const next = i < 0 ? (delta > 0 ? 0 : rows.length - 1) : Math.min(rows.length - 1, Math.max(0, i + delta));
    navigate(`/c/${rows[next].id}`);
  }, [rows, selectedId]);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.defaultPrevented || e.metaKey || e.ctrlKey || e.altKey || typing(e.target)) return;
      if (document.querySelector('dialog[open]')) return;
      switch (e.key) {
        case 'j': move(1); break;
        case 'k': move(-1); break;
        case 'r': document.getElementById('composer-text')?.focus(); break;
        case 'e': document.getElementById('action-resolve')?.click(); break;
        case 'a': document.getElementById('action-assign-me')?.click(); break;
        case '/': searchRef.current?.focus(); break;
        case '?': setHelp(true); break;
        case 'Escape': if (selectedId) navigate('/'); break;
        default: return;
      }
      e.preventDefault();
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [move, selectedId]);

  const slaMs = session.inbox.response_sla_hours * 3600_000;
  return (
    <div className={cls('inbox', selectedId && 'has-thread', selectedId && contactOpen && 'contact-open')}>
      <h1 className="sr-only">Inbox</h1>
      <ConversationList rows={rows} counts={counts} selectedId={selectedId} filters={filters} onFilters={setFilters} slaMs={slaMs}
        load={load} onLoadMore={() => void loadMoreResolved()} accountList={accountList} searching={searching} searchRef={searchRef} />
      {selectedId
        ? <Thread key={selectedId} id={selectedId} contactOpen={contactOpen} onToggleContact={() => setContactOpen(!contactOpen)} />
        : (
          <section className="thread-pane empty-thread" aria-label="Conversation">
            <div>
              <h2>Pick a conversation</h2>
              <p className="muted">The most urgent customers are at the top. Press <kbd>j</kbd> to open the first one, <kbd>?</kbd> for all shortcuts.</p>
            </div>
          </section>
        )}
      {selectedId && contactOpen && <ContactPanel conversationId={selectedId} onClose={() => setContactOpen(false)} />}
      {help && <ShortcutHelp onClose={() => setHelp(false)} />}
    </div>
  );
}
