import { useState } from 'react';
import { api, errorText, listAll } from '../api';
import { toast } from '../toast';
import type { ApiKey } from '../types';
import { ConfirmButton, ErrorLine, SecretDialog, useLoad, when } from './common';

/** API keys: list (never the key), create (shown once), revoke. */
export function ApiKeys() {
  const { data, error, reload } = useLoad(() => listAll<ApiKey>('/v1/api-keys', { limit: 200 }));
  const [name, setName] = useState('');
  const [busy, setBusy] = useState(false);
  const [formError, setFormError] = useState<string | null>(null);
  const [created, setCreated] = useState<ApiKey | null>(null);

  async function create(e: React.FormEvent) {
    e.preventDefault();
    setBusy(true);
    setFormError(null);
    try {
      setCreated(await api<ApiKey>('POST', '/v1/api-keys', { name }));
      setName('');
      await reload();
    } catch (err) { setFormError(errorText(err)); } finally { setBusy(false); }
  }

  return (
    <section aria-labelledby="keys-title">
      <h2 id="keys-title">API keys</h2>
      <p className="muted">Backends and bots call the API with <code>Authorization: Bearer dmg_…</code>. A key can do everything an admin can.</p>
      <form className="inline-form" onSubmit={create}>
        <label htmlFor="key-name">Name</label>
        <input id="key-name" required maxLength={200} placeholder="e.g. order bot" value={name} onChange={(e) => setName(e.target.value)} />
        <button type="submit" className="primary" disabled={busy || !name.trim()}>Create key</button>
      </form>
      <ErrorLine error={formError ?? error} />
      <div className="table-wrap">
        <table>
          <caption className="sr-only">API keys</caption>
          <thead><tr><th scope="col">Name</th><th scope="col">Key</th><th scope="col">Created</th><th scope="col">Last used</th><th scope="col">Status</th><th scope="col"><span className="sr-only">Actions</span></th></tr></thead>
          <tbody>
            {data?.map((k) => (
              <tr key={k.id}>
                <td>{k.name}</td>
                <td><code>{k.prefix}…</code></td>
                <td>{when(k.created_at)}</td>
                <td>{when(k.last_used_at)}</td>
                <td>{k.revoked_at ? <span className="badge bad">Revoked</span> : <span className="badge ok">Active</span>}</td>
                <td>{!k.revoked_at && (
                  <ConfirmButton label="Revoke" className="danger-outline" confirm="Revoke? Callers using it stop at once." onConfirm={async () => {
                    try { await api('DELETE', `/v1/api-keys/${k.id}`); toast(`Revoked ${k.name}`); await reload(); } catch (err) { toast(errorText(err), 'error'); }
                  }} />
                )}</td>
              </tr>
            ))}
            {data?.length === 0 && <tr><td colSpan={6} className="muted">No keys yet.</td></tr>}
          </tbody>
        </table>
      </div>
      {created?.key && (
        <SecretDialog title={`API key “${created.name}”`} secret={created.key} note="Copy the key now: it is shown only once. dmgate stores only its hash." onClose={() => setCreated(null)} />
      )}
    </section>
  );
}
