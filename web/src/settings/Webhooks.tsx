import { useState } from 'react';
import { api, errorText, listAll } from '../api';
import { toast } from '../toast';
import { EVENT_TYPES, type DeliveryAttempt, type Page, type WebhookEndpoint } from '../types';
import { cls } from '../util';
import { ConfirmButton, ErrorLine, SecretDialog, useLoad, when } from './common';

const SUBSCRIBABLE = EVENT_TYPES.filter((e) => e !== 'webhook.test');

/** Webhook endpoints: create (secret shown once), enable, test, rotate, delivery log, retry, recover. */
export function Webhooks() {
  const { data, error, reload } = useLoad(() => listAll<WebhookEndpoint>('/v1/webhook-endpoints', { limit: 200 }));
  const [secret, setSecret] = useState<{ title: string; value: string } | null>(null);
  const [open, setOpen] = useState<string | null>(null);

  return (
    <section aria-labelledby="wh-title">
      <h2 id="wh-title">Webhook endpoints</h2>
      <p className="muted">Every event is posted to the endpoints that subscribe to it, signed per Standard Webhooks (<code>webhook-signature</code>).</p>
      <CreateEndpoint onCreated={(ep) => { setSecret({ title: `Signing secret for ${ep.url}`, value: ep.signing_secret! }); setOpen(ep.id); void reload(); }} />
      <ErrorLine error={error} />
      {data?.length === 0 && <p className="empty-card">No endpoints yet.</p>}
      <ul className="cards">
        {data?.map((ep) => (
          <EndpointCard key={ep.id} ep={ep} expanded={open === ep.id} onToggle={() => setOpen(open === ep.id ? null : ep.id)}
            onChanged={() => void reload()} onSecret={(v) => setSecret({ title: `New signing secret for ${ep.url}`, value: v })} />
        ))}
      </ul>
      {secret && <SecretDialog title={secret.title} secret={secret.value} note="Copy the secret now: it is shown only once. Verify each delivery's signature with it." onClose={() => setSecret(null)} />}
    </section>
  );
}

function CreateEndpoint({ onCreated }: { onCreated(ep: WebhookEndpoint): void }) {
  const [url, setUrl] = useState('');
  const [all, setAll] = useState(true);
  const [events, setEvents] = useState<string[]>(['message.received']);
  const [description, setDescription] = useState('');
  const [ordered, setOrdered] = useState(false);
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<string | null>(null);

  async function submit(e: React.FormEvent) {
    e.preventDefault();
    setBusy(true);
    setErr(null);
    try {
      const ep = await api<WebhookEndpoint>('POST', '/v1/webhook-endpoints', { url, events: all ? ['*'] : events, description: description || null, ordered });
      setUrl(''); setDescription(''); setOrdered(false);
      onCreated(ep);
    } catch (error) { setErr(errorText(error)); } finally { setBusy(false); }
  }

  return (
    <form className="card form-card" onSubmit={submit} aria-labelledby="wh-new">
      <h3 id="wh-new">Add an endpoint</h3>
      <label htmlFor="wh-url">URL</label>
      <input id="wh-url" type="url" required placeholder="https://example.com/hooks/dmgate" value={url} onChange={(e) => setUrl(e.target.value)} />
      <label htmlFor="wh-desc">Description <span className="muted">(optional)</span></label>
      <input id="wh-desc" maxLength={500} value={description} onChange={(e) => setDescription(e.target.value)} />
      <fieldset>
        <legend>Events</legend>
        <label className="check"><input type="checkbox" checked={all} onChange={(e) => setAll(e.target.checked)} /> All events</label>
        {!all && (
          <div className="check-grid">
            {SUBSCRIBABLE.map((t) => (
              <label key={t} className="check"><input type="checkbox" checked={events.includes(t)}
                onChange={(e) => setEvents(e.target.checked ? [...events, t] : events.filter((x) => x !== t))} /> {t}</label>
            ))}
          </div>
        )}
      </fieldset>
      <label className="check"><input type="checkbox" checked={ordered} onChange={(e) => setOrdered(e.target.checked)} /> Deliver each conversation's events strictly in order</label>
      <ErrorLine error={err} />
      <button type="submit" className="primary" disabled={busy || (!all && events.length === 0)}>Add endpoint</button>
    </form>
  );
}

function EndpointCard({ ep, expanded, onToggle, onChanged, onSecret }: { ep: WebhookEndpoint; expanded: boolean; onToggle(): void; onChanged(): void; onSecret(s: string): void }) {
  const run = async (fn: () => Promise<unknown>, done: string) => {
    try { await fn(); toast(done); onChanged(); } catch (err) { toast(errorText(err), 'error'); }
  };
  return (
    <li className="card endpoint" data-testid="endpoint-card">
      <div className="card-head">
        <div className="grow">
          <h3 className="url">{ep.url}</h3>
          <p className="muted small">{ep.description ? ep.description + ' · ' : ''}{ep.events.includes('*') ? 'all events' : ep.events.join(', ')}{ep.ordered ? ' · ordered' : ''}</p>
        </div>
        <span className={cls('badge', ep.enabled ? 'ok' : 'bad')}>{ep.enabled ? 'Enabled' : 'Disabled'}</span>
      </div>
      {!ep.enabled && ep.disabled_reason && <p className="small">Disabled: {ep.disabled_reason}</p>}
      <div className="card-actions">
        <button type="button" aria-expanded={expanded} onClick={onToggle}>{expanded ? 'Hide deliveries' : 'Deliveries'}</button>
        <button type="button" disabled={!ep.enabled} onClick={() => void run(() => api('POST', `/v1/webhook-endpoints/${ep.id}/test`), 'Test event queued')}>Send test</button>
        <button type="button" onClick={() => void run(() => api('PATCH', `/v1/webhook-endpoints/${ep.id}`, { enabled: !ep.enabled }), ep.enabled ? 'Disabled' : 'Enabled')}>{ep.enabled ? 'Disable' : 'Enable'}</button>
        <ConfirmButton label="Rotate secret" confirm="The old secret stops at once. Rotate?" onConfirm={async () => {
          try { const r = await api<WebhookEndpoint>('POST', `/v1/webhook-endpoints/${ep.id}/rotate-secret`); onSecret(r.signing_secret!); } catch (err) { toast(errorText(err), 'error'); }
        }} />
        <ConfirmButton label="Delete" className="danger-outline" confirm="Delete the endpoint and its delivery log?" onConfirm={() => run(() => api('DELETE', `/v1/webhook-endpoints/${ep.id}`), 'Endpoint deleted')} />
      </div>
      {expanded && <Deliveries ep={ep} />}
    </li>
  );
}

function Deliveries({ ep }: { ep: WebhookEndpoint }) {
  const [cursor, setCursor] = useState<string | null>(null);
  const { data, error, reload, setData } = useLoad(() => api<Page<DeliveryAttempt>>('GET', `/v1/webhook-endpoints/${ep.id}/deliveries?limit=50`).then((p) => { setCursor(p.next_cursor); return p.data; }), [ep.id]);
  const [since, setSince] = useState(() => new Date(Date.now() - 24 * 3600_000 - new Date().getTimezoneOffset() * 60_000).toISOString().slice(0, 16));

  const more = async () => {
    if (!cursor) return;
    const p = await api<Page<DeliveryAttempt>>('GET', `/v1/webhook-endpoints/${ep.id}/deliveries?limit=50&cursor=${encodeURIComponent(cursor)}`);
    setData([...(data ?? []), ...p.data]);
    setCursor(p.next_cursor);
  };
  const retry = async (id: string) => {
    try { await api('POST', `/v1/deliveries/${id}/retry`); toast('Delivery queued again'); setTimeout(() => void reload(), 1000); } catch (err) { toast(errorText(err), 'error'); }
  };
  const recover = async (e: React.FormEvent) => {
    e.preventDefault();
    try {
      const r = await api<{ recovered: number }>('POST', `/v1/webhook-endpoints/${ep.id}/recover`, { since: new Date(since).toISOString() });
      toast(`${r.recovered} failed ${r.recovered === 1 ? 'delivery' : 'deliveries'} queued again`);
      setTimeout(() => void reload(), 1000);
    } catch (err) { toast(errorText(err), 'error'); }
  };

  return (
    <div className="deliveries">
      <form className="inline-form" onSubmit={recover}>
        <label htmlFor={`since-${ep.id}`}>Recover failed deliveries since</label>
        <input id={`since-${ep.id}`} type="datetime-local" required value={since} onChange={(e) => setSince(e.target.value)} />
        <button type="submit">Recover</button>
        <button type="button" className="ghost" onClick={() => void reload()}>Refresh</button>
      </form>
      <ErrorLine error={error} />
      <div className="table-wrap">
        <table>
          <caption className="sr-only">Delivery attempts to {ep.url}, newest first</caption>
          <thead><tr><th scope="col">Time</th><th scope="col">Event</th><th scope="col">Status</th><th scope="col">Latency</th><th scope="col">Delivery</th><th scope="col"><span className="sr-only">Actions</span></th></tr></thead>
          <tbody>
            {data?.map((a) => (
              <tr key={a.id}>
                <td>{when(a.attempted_at)}</td>
                <td><code>{a.event_type}</code></td>
                <td>
                  <span className={cls('code', a.status_code !== null && a.status_code < 300 ? 'ok-text' : 'bad-text')}>{a.status_code ?? 'no answer'}</span>
                  {a.error && <span className="muted small"> {a.error}</span>}
                </td>
                <td>{a.latency_ms} ms</td>
                <td><span className={cls('badge', a.delivery_status === 'succeeded' ? 'ok' : a.delivery_status === 'failed' ? 'bad' : '')}>{a.delivery_status}</span></td>
                <td>{a.delivery_status === 'failed' && <button type="button" className="link" onClick={() => void retry(a.delivery_id)}>Retry</button>}</td>
              </tr>
            ))}
            {data?.length === 0 && <tr><td colSpan={6} className="muted">No deliveries yet.</td></tr>}
          </tbody>
        </table>
      </div>
      {cursor && <button type="button" className="ghost" onClick={() => void more()}>Older attempts</button>}
    </div>
  );
}
