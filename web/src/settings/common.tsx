import { useCallback, useEffect, useRef, useState } from 'react';
import { errorText } from '../api';

/** Loads data for a settings page; `reload` after a change. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[] = []) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const reload = useCallback(async () => {
    setLoading(true);
    try { setData(await load()); setError(null); } catch (err) { setError(errorText(err)); } finally { setLoading(false); }
  }, deps);
  useEffect(() => { void reload(); }, [reload]);
  return { data, error, loading, reload, setData };
}

/** A modal that shows a secret once, with a copy button. */
export function SecretDialog({ title, secret, note, onClose }: { title: string; secret: string; note: string; onClose(): void }) {
  const ref = useRef<HTMLDialogElement>(null);
  const [copied, setCopied] = useState(false);
  useEffect(() => { const d = ref.current; if (d && !d.open) d.showModal(); }, []);
  return (
    <dialog ref={ref} className="dialog" aria-labelledby="secret-title" onClose={onClose} data-testid="secret-dialog">
      <h2 id="secret-title">{title}</h2>
      <p>{note}</p>
      <div className="secret">
        <code data-testid="secret-value">{secret}</code>
        <button type="button" onClick={() => { void navigator.clipboard?.writeText(secret).then(() => setCopied(true)); }}>{copied ? 'Copied' : 'Copy'}</button>
      </div>
      <form method="dialog"><button type="submit" className="primary">I have stored it</button></form>
    </dialog>
  );
}

/** Two-step destructive buttons: no native confirm() popups. */
export function ConfirmButton({ label, confirm, onConfirm, disabled, className }: { label: string; confirm: string; onConfirm(): void | Promise<void>; disabled?: boolean; className?: string }) {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  if (!asking) return <button type="button" className={className} disabled={disabled} onClick={() => setAsking(true)}>{label}</button>;
  return (
    <span className="confirm" role="group" aria-label={confirm}>
      <span className="small">{confirm}</span>
      <button type="button" className="danger" disabled={busy} autoFocus onClick={async () => { setBusy(true); try { await onConfirm(); } finally { setBusy(false); setAsking(false); } }}>Yes</button>
      <button type="button" onClick={() => setAsking(false)}>Cancel</button>
    </span>
  );
}

export function ErrorLine({ error }: { error: string | null }) {
  return error ? <p className="form-error" role="alert">{error}</p> : null;
}

export const when = (iso: string | null) => (iso ? new Date(iso).toLocaleString() : '—');
