import { useState } from 'react';
import { api, errorText } from '../api';
import { useSession } from '../session';
import { toast } from '../toast';
import { ErrorLine } from './common';

export function Profile() {
  const { session, signOut } = useSession();
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [err, setErr] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <section aria-labelledby="profile-title">
      <h2 id="profile-title">Profile</h2>
      <dl className="facts">
        <div><dt>Name</dt><dd>{session.user.name ?? '—'}</dd></div>
        <div><dt>Email</dt><dd>{session.user.email}</dd></div>
        <div><dt>Role</dt><dd>{session.user.role}</dd></div>
        <div><dt>Response SLA</dt><dd>{session.inbox.response_sla_hours} h (customers waiting longer show in red)</dd></div>
      </dl>
      <form className="card form-card" onSubmit={async (e) => {
        e.preventDefault();
        setBusy(true);
        setErr(null);
        try {
          await api('POST', '/auth/password', { current_password: current, new_password: next });
          toast('Password changed. Your other sessions were signed out.');
          setCurrent(''); setNext('');
        } catch (error) { setErr(errorText(error)); } finally { setBusy(false); }
      }}>
        <h3>Change password</h3>
        <input type="email" autoComplete="username" value={session.user.email} readOnly hidden />
        <label htmlFor="pw-current">Current password</label>
        <input id="pw-current" type="password" required autoComplete="current-password" value={current} onChange={(e) => setCurrent(e.target.value)} />
        <label htmlFor="pw-new">New password <span className="muted">(at least 8 characters)</span></label>
        <input id="pw-new" type="password" required minLength={8} autoComplete="new-password" value={next} onChange={(e) => setNext(e.target.value)} />
        <ErrorLine error={err} />
        <button type="submit" className="primary" disabled={busy}>Change password</button>
      </form>
      <button type="button" onClick={() => void signOut()}>Sign out</button>
    </section>
  );
}
