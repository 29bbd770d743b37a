import { useEffect, useRef, useState } from 'react';
import { api, ApiError, errorText } from '../api';
import type { Session } from '../types';

export function Login({ onSignedIn }: { onSignedIn(s: Session): void }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState<{ has_users: boolean; sandbox: boolean } | null>(null);
  const emailRef = useRef<HTMLInputElement>(null);

  useEffect(() => {
    emailRef.current?.focus();
    api<{ has_users: boolean; sandbox: boolean }>('GET', '/auth/status', undefined, { quiet401: true }).then(setStatus, () => undefined);
  }, []);

  async function submit(e: React.FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onSignedIn(await api<Session>('POST', '/auth/login', { email, password }, { quiet401: true }));
    } catch (err) {
      if (err instanceof ApiError && err.code === 'rate_limited') {
        setError(`Too many failed attempts. Try again in ${Math.ceil((err.retryAfter ?? 900) / 60)} minutes.`);
      } else setError(errorText(err));
      setBusy(false);
    }
  }

  return (
    <main className="login" id="main">
      <form className="card login-card" onSubmit={submit} aria-describedby={error ? 'login-error' : undefined}>
        <h1><span className="brand">dmgate</span> inbox</h1>
        <p className="muted">Sign in to answer your TikTok DMs.</p>
        <label htmlFor="login-email">Email</label>
        <input id="login-email" ref={emailRef} type="email" autoComplete="username" required value={email} onChange={(e) => setEmail(e.target.value)} />
        <label htmlFor="login-password">Password</label>
        <input id="login-password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
        <p id="login-error" className="form-error" role="alert">{error}</p>
        <button type="submit" className="primary wide" disabled={busy}>{busy ? 'Signing in…' : 'Sign in'}</button>
        {status && !status.has_users && (
          <div className="hint">
            <p><strong>No users yet.</strong> Create the first admin on the server:</p>
            <pre><code>npx dmgate users create --email you@example.com --role admin</code></pre>
          </div>
        )}
      </form>
    </main>
  );
}
