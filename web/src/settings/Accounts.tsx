import { useEffect, useState } from 'react';
import { api, errorText, listAll } from '../api';
import { loadAccounts } from '../live';
import { navigate, useSearch } from '../router';
import { toast } from '../toast';
import { duration } from '../time';
import type { Account, AccountHealth, Backfill } from '../types';
import { cls } from '../util';
import { ConfirmButton, ErrorLine, useLoad, when } from './common';

const STATUS: Record<Account['status'], string> = {
  active: 'Active', needs_reauth: 'Needs reconnecting', disconnected: 'Disconnected', restricted: 'Restricted by TikTok',
};

const connectUrl = (returnTo = '/settings/accounts') => `/connect/tiktok?return_to=${encodeURIComponent(returnTo)}`;

/** TikTok Business accounts: connect, reconnect, disconnect, status and token health. */
export function Accounts() {
  const { data, error, loading, reload } = useLoad(() => listAll<Account>('/v1/accounts', { limit: 200 }));
  const search = useSearch();
  const [banner, setBanner] = useState<string | null>(null);

  useEffect(() => {
    const connected = new URLSearchParams(search).get('connected');
    if (connected) {
      setBanner(`Connected. New DMs to this account now arrive in the inbox.`);
      navigate('/settings/accounts', { replace: true });
      void loadAccounts();
    }
  }, [search]);

  async function disconnect(a: Account) {
    try {
      await api('DELETE', `/v1/accounts/${a.id}`);
      toast(`Disconnected ${a.username ? '@' + a.username : a.external_id}. Its conversations stay.`);
      await reload();
      void loadAccounts();
    } catch (err) { toast(errorText(err), 'error'); }
  }

  return (
    <section aria-labelledby="accounts-title">
      <div className="section-head">
        <h2 id="accounts-title">TikTok accounts</h2>
        <a className="button primary" href={connectUrl()}>Connect an account</a>
      </div>
      {banner && <p className="notice" role="status">{banner}</p>}
      <ErrorLine error={error} />
      {loading && !data && <p className="muted">Loading…</p>}
      {data && data.length === 0 && <p className="empty-card">No account is connected yet. Connect a TikTok Business account to receive its DMs.</p>}
      <ul className="cards">
        {data?.map((a) => <AccountCard key={a.id} a={a} onDisconnect={() => disconnect(a)} onChanged={() => { void reload(); void loadAccounts(); }} />)}
      </ul>
    </section>
  );
}

function AccountCard({ a, onDisconnect, onChanged }: { a: Account; onDisconnect(): Promise<void>; onChanged(): void }) {
  const [avatarFailed, setAvatarFailed] = useState(false);
  const [health, setHealth] = useState<AccountHealth | null>(null);
  const [checking, setChecking] = useState(false);
  const check = async () => {
    setChecking(true);
    try { setHealth(await api<AccountHealth>('GET', `/v1/accounts/${a.id}/health`)); onChanged(); } catch (err) { toast(errorText(err), 'error'); } finally { setChecking(false); }
  };
  const backfill = async () => {
    try { await api('POST', `/v1/accounts/${a.id}/backfill`, {}); toast('Reading the recent conversations again; nothing is stored twice.'); onChanged(); } catch (err) { toast(errorText(err), 'error'); }
  };
  const now = Date.now();
  const tokenExp = a.token_expires_at ? Date.parse(a.token_expires_at) : null;
  const refreshExp = a.refresh_token_expires_at ? Date.parse(a.refresh_token_expires_at) : null;
  const refreshSoon = refreshExp !== null && refreshExp - now < 7 * 86400_000;
  const tone = a.status !== 'active' ? 'bad' : refreshSoon ? 'warn' : 'ok';
  return (
    <li className="card account" data-testid="account-card">
      <div className="card-head">
        {a.avatar_url && !avatarFailed
          ? <img className="avatar" src={a.avatar_url} alt="" width={40} height={40} referrerPolicy="no-referrer" onError={() => setAvatarFailed(true)} />
          : <span className="avatar" aria-hidden="true">{(a.username ?? '?')[0]?.toUpperCase()}</span>}
        <div>
          <h3>{a.username ? '@' + a.username : a.external_id}</h3>
          <p className="muted small">{a.display_name ?? ''}{a.region ? ` · ${a.region}` : ''} · connected {when(a.created_at)}</p>
        </div>
        <span className={cls('badge', tone)}>{STATUS[a.status]}</span>
      </div>
      {a.status_reason && a.status !== 'active' && <p className="small">{a.status_reason}</p>}
      <dl className="facts small">
        <div><dt>Access token</dt><dd>{tokenExp === null ? '—' : tokenExp > now ? `valid for ${duration(tokenExp - now)} (renewed automatically)` : 'expired; renews on next use'}</dd></div>
        <div><dt>Authorization</dt><dd className={cls(refreshSoon && 'warn-text')}>{refreshExp === null ? '—' : refreshExp > now ? `expires in ${duration(refreshExp - now)}${refreshSoon ? ': reconnect soon' : ''}` : 'expired: reconnect'}</dd></div>
        <div><dt>Scopes</dt><dd>{a.scopes.length ? a.scopes.join(', ') : '—'}</dd></div>
        <div><dt>Business id</dt><dd><code>{a.external_id}</code></dd></div>
      </dl>
      {a.backfill && <BackfillLine b={a.backfill} />}
      <div className="card-actions">
        <a className={cls('button', a.status !== 'active' && 'primary')} href={connectUrl()}>{a.status === 'active' ? 'Reconnect' : 'Reconnect now'}</a>
        <button type="button" onClick={() => void check()} disabled={checking}>{checking ? 'Checking…' : 'Check health at TikTok'}</button>
        {a.status === 'active' && (
          <button type="button" disabled={a.backfill?.status === 'running' || a.backfill?.status === 'queued'} onClick={() => void backfill()}>Re-read recent history</button>
        )}
        {a.status !== 'disconnected' && <ConfirmButton label="Disconnect" className="danger-outline" confirm="Disconnect? Messages and contacts stay." onConfirm={onDisconnect} />}
      </div>
      {health && <HealthReport h={health} />}
    </li>
  );
}

function BackfillLine({ b }: { b: Backfill }) {
  const progress = b.conversations_total ? `${b.conversations_done} of ${b.conversations_total} conversations` : `${b.conversations_done} conversations`;
  const text = b.status === 'done' ? `History read: ${progress}, ${b.messages} messages (${b.days} days), ${when(b.finished_at)}`
    : b.status === 'failed' ? `Reading history failed: ${b.error ?? 'unknown error'}`
    : b.status === 'running' ? `Reading history: ${progress}, ${b.messages} messages so far`
    : 'Reading history: queued';
  return <p className={cls('small', b.status === 'failed' && 'bad-text')} role="status">{text}</p>;
}

function HealthReport({ h }: { h: AccountHealth }) {
  const mark = (ok: boolean | null) => (ok === null ? 'not checked' : ok ? 'OK' : 'problem');
  return (
    <div className={cls('health', h.healthy ? 'ok' : 'bad')} role="status" data-testid="account-health">
      <p><strong>{h.healthy ? 'Healthy' : 'Needs attention'}</strong> <span className="muted small">checked {when(h.checked_at)}</span></p>
      {h.fix && <p>Fix: {h.fix}</p>}
      <dl className="facts small">
        <div><dt>TikTok token check</dt><dd>{mark(h.tiktok.ok)}{h.tiktok.missing_scopes.length ? ` · missing ${h.tiktok.missing_scopes.join(', ')}` : ''}{h.tiktok.error ? ` · ${h.tiktok.error}` : ''}</dd></div>
        <div><dt>DM webhook</dt><dd>{mark(h.webhook.ok)}{h.webhook.ok === false && h.webhook.callback_url ? ` · TikTok calls ${h.webhook.callback_url}` : ''}{h.webhook.error ? ` · ${h.webhook.error}` : ''}</dd></div>
        <div><dt>Waiting</dt><dd>{h.waiting.queued_replies} queued and {h.waiting.held_replies} held replies · {h.waiting.held_webhooks} held webhooks</dd></div>
      </dl>
    </div>
  );
}
