import { lazy, Suspense, useCallback, useEffect, useMemo, useState, useSyncExternalStore } from 'react';
import { api, setCsrfToken, setUnauthorizedHandler } from './api';
import { setCannedOwner } from './canned';
import { getStreamState, onStreamState, startLive } from './live';
import { linkClick, navigate, usePath } from './router';
import { SessionContext, useSession, type SessionContextValue } from './session';
import { initials } from './util';
import type { Session } from './types';
import { Login } from './components/Login';
import { Inbox } from './components/Inbox';
import { Toasts } from './components/Toasts';

const Settings = lazy(() => import('./settings/Settings'));

export function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const path = usePath();

  const adopt = useCallback((s: Session | null) => {
    if (s) { setCsrfToken(s.csrf_token); setCannedOwner(s.user.id); }
    setSession(s);
  }, []);

  useEffect(() => {
    api<Session>('GET', '/auth/me', undefined, { quiet401: true }).then(adopt, () => adopt(null));
  }, [adopt]);

  useEffect(() => {
    setUnauthorizedHandler(() => adopt(null));
    return () => setUnauthorizedHandler(null);
  }, [adopt]);

  useEffect(() => {
    if (session === null && path !== '/login') navigate('/login' + (path !== '/' ? '?next=' + encodeURIComponent(path + location.search) : ''), { replace: true });
    if (session && path === '/login') {
      const next = new URLSearchParams(location.search).get('next');
      navigate(next && next.startsWith('/') && !next.startsWith('//') ? next : '/', { replace: true });
    }
  }, [session, path]);

  const signedOut = useCallback(() => adopt(null), [adopt]);
  if (session === undefined) return <div className="boot" aria-busy="true" aria-label="Loading" />;
  if (session === null) return <><Login onSignedIn={adopt} /><Toasts /></>;
  return <SignedIn session={session} onSignedOut={signedOut} />;
}

function SignedIn({ session, onSignedOut }: { session: Session; onSignedOut(): void }) {
  const path = usePath();
  useEffect(() => startLive(onSignedOut), [onSignedOut]);

  const value = useMemo<SessionContextValue>(() => ({
    session,
    async signOut() {
      try { await api('POST', '/auth/logout'); } finally { onSignedOut(); }
    },
  }), [session, onSignedOut]);

  const inSettings = path.startsWith('/settings');
  return (
    <SessionContext.Provider value={value}>
      <a className="skip" href="#main">Skip to content</a>
      <TopBar inSettings={inSettings} />
      <main id="main" className="main" tabIndex={-1}>
        {inSettings
          ? <Suspense fallback={<div className="pane-loading" aria-busy="true">Loading settings…</div>}><Settings /></Suspense>
          : <Inbox />}
      </main>
      <Toasts />
    </SessionContext.Provider>
  );
}

function TopBar({ inSettings }: { inSettings: boolean }) {
  const { session, signOut } = useSession();
  const live = useSyncExternalStore(onStreamState, getStreamState);
  const [menu, setMenu] = useState(false);
  const who = session.user.name || session.user.email;
  return (
    <header className="topbar">
      <a className="brand" href="/" onClick={(e) => linkClick(e, '/')}>dmgate</a>
      <nav aria-label="Main">
        <a href="/" aria-current={!inSettings ? 'page' : undefined} onClick={(e) => linkClick(e, '/')}>Inbox</a>
        <a href="/settings" aria-current={inSettings ? 'page' : undefined} onClick={(e) => linkClick(e, '/settings')}>Settings</a>
      </nav>
      {session.inbox.sandbox && <span className="badge sandbox" title="Connected to the built-in TikTok emulator">Sandbox</span>}
      <span className={`live live-${live}`} role="status" aria-live="polite" data-testid="live-status">
        <span className="dot" aria-hidden="true" />{live === 'live' ? 'Live' : live === 'connecting' ? 'Connecting…' : 'Reconnecting…'}
      </span>
      <div className="usermenu">
        <button type="button" className="ghost" aria-expanded={menu} aria-haspopup="true" onClick={() => setMenu(!menu)}>
          <span className="avatar sm" aria-hidden="true">{initials(who)}</span><span className="who">{who}</span>
        </button>
        {menu && (
          <div className="menu" role="menu" onKeyDown={(e) => { if (e.key === 'Escape') setMenu(false); }}>
            <p className="menu-note">{session.user.email} · {session.user.role}</p>
            <button type="button" role="menuitem" onClick={() => { setMenu(false); navigate('/settings/profile'); }}>Profile and password</button>
            <button type="button" role="menuitem" onClick={() => void signOut()}>Sign out</button>
          </div>
        )}
      </div>
    </header>
  );
}
