import { useState } from 'react';
import { api, errorText, listAll } from '../api';
import { loadUsers } from '../live';
import { useSession } from '../session';
import { toast } from '../toast';
import type { Role, User } from '../types';
import { cls } from '../util';
import { ConfirmButton, ErrorLine, useLoad, when } from './common';

/** Inbox users: create, change role, disable or enable, set a new password. */
export function Users() {
  const { session } = useSession();
  const { data, error, reload } = useLoad(() => listAll<User>('/v1/users', { limit: 500 }));
  const changed = async () => { await reload(); void loadUsers(); };

  const patch = async (u: User, body: Record<string, unknown>, done: string) => {
    try { await api('PATCH', `/v1/users/${u.id}`, body); toast(done); await changed(); } catch (err) { toast(errorText(err), 'error'); }
  };

  return (
    <section aria-labelledby="users-title">
      <h2 id="users-title">Users</h2>
      <p className="muted">Agents answer conversations; admins also manage accounts, webhooks, API keys and users.</p>
      <CreateUser onCreated={changed} />
      <ErrorLine error={error} />
      <div className="table-wrap">
        <table>
          <caption className="sr-only">Users</caption>
          <thead><tr><th scope="col">Name</th><th scope="col">Email</th><th scope="col">Role</th><th scope="col">Status</th><th scope="col">Since</th><th scope="col"><span className="sr-only">Actions</span></th></tr></thead>
          <tbody>
            {data?.map((u) => (
              <tr key={u.id} className={cls(u.disabled && 'muted')}>
                <td>{u.name ?? '—'}{u.id === session.user.id && <span className="muted"> (you)</span>}</td>
                <td>{u.email}</td>
                <td>
                  <label className="sr-only" htmlFor={`role-${u.id}`}>Role of {u.email}</label>
                  <select id={`role-${u.id}`} value={u.role} onChange={(e) => void patch(u, { role: e.target.value }, `${u.email} is now ${e.target.value === 'admin' ? 'an admin' : 'an agent'}`)}>
                    <option value="agent">Agent</option>
                    <option value="admin">Admin</option>
                  </select>
                </td>
                <td>{u.disabled ? <span className="badge bad">Disabled</span> : <span className="badge ok">Active</span>}</td>
                <td>{when(u.created_at)}</td>
                <td className="row-actions">
                  <ResetPassword user={u} />
                  {u.disabled
                    ? <button type="button" onClick={() => void patch(u, { disabled: false }, `${u.email} can sign in again`)}>Enable</button>
                    : u.id !== session.user.id && <ConfirmButton label="Disable" className="danger-outline" confirm="Disable? They are signed out at once." onConfirm={() => patch(u, { disabled: true }, `${u.email} is disabled`)} />}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function CreateUser({ onCreated }: { onCreated(): Promise<void> }) {
  const [email, setEmail] = useState('');
  const [name, setName] = useState('');
  const [role, setRole] = useState<Role>('agent');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<string | null>(null);
  async function submit(e: React.FormEvent) {
    e.preventDefault();
    setBusy(true);
    setErr(null);
    try {
      await api('POST', '/v1/users', { email, name: name || null, role, password });
      toast(`Created ${email}. Share the password with them safely.`);
      setEmail(''); setName(''); setPassword(''); setRole('agent');
      await onCreated();
    } catch (error) { setErr(errorText(error)); } finally { setBusy(false); }
  }
  return (
    <form className="card form-card grid-form" onSubmit={submit} aria-labelledby="new-user">
      <h3 id="new-user">Add a user</h3>
      <div><label htmlFor="nu-email">Email</label><input id="nu-email" type="email" required autoComplete="off" value={email} onChange={(e) => setEmail(e.target.value)} /></div>
      <div><label htmlFor="nu-name">Name</label><input id="nu-name" maxLength={200} value={name} onChange={(e) => setName(e.target.value)} /></div>
      <div><label htmlFor="nu-role">Role</label>
        <select id="nu-role" value={role} onChange={(e) => setRole(e.target.value as Role)}><option value="agent">Agent</option><option value="admin">Admin</option></select></div>
      <div><label htmlFor="nu-password">Initial password</label><input id="nu-password" type="password" required minLength={8} autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} /></div>
      <ErrorLine error={err} />
      <div><button type="submit" className="primary" disabled={busy}>Add user</button></div>
    </form>
  );
}

function ResetPassword({ user }: { user: User }) {
  const [open, setOpen] = useState(false);
  const [pw, setPw] = useState('');
  if (!open) return <button type="button" onClick={() => setOpen(true)}>New password</button>;
  return (
    <form className="inline-form" onSubmit={async (e) => {
      e.preventDefault();
      try { await api('PATCH', `/v1/users/${user.id}`, { password: pw }); toast(`New password set for ${user.email}; their sessions ended.`); setOpen(false); setPw(''); } catch (err) { toast(errorText(err), 'error'); }
    }}>
      <label className="sr-only" htmlFor={`pw-${user.id}`}>New password for {user.email}</label>
      <input id={`pw-${user.id}`} type="password" required minLength={8} autoComplete="new-password" value={pw} onChange={(e) => setPw(e.target.value)} autoFocus />
      <button type="submit" className="primary">Set</button>
      <button type="button" onClick={() => setOpen(false)}>Cancel</button>
    </form>
  );
}
