import { useEffect, useRef, useState, useSyncExternalStore } from 'react';
import { ApiError } from '../api';
import { fillCanned, useCanned, type Canned } from '../canned';
import { checkImage, toBase64 } from '../images';
import { accounts, users } from '../store';
import { useSession } from '../session';
import { duration, hoursLeft, useNow } from '../time';
import type { SendBody } from '../thread-data';
import type { Conversation, Message } from '../types';
import { cls, codePoints, contactName } from '../util';

export const MAX_TEXT = 6000;

/** Drafts survive switching conversations. */
const drafts = new Map<string, string>();

interface Attached { bytes: Uint8Array; type: string; name: string; url: string; size: number }

interface Props {
  conv: Conversation;
  send(body: SendBody, preview: string | null): Promise<Message>;
  replyTo: Message | null;
  onClearReply(): void;
}

/** Why nothing can be sent now (the same rules the server enforces), or null. */
export function blockReason(conv: Conversation, now: number): string | null {
  const acct = accounts.byId.get(conv.account_id);
  const name = accounts.label(conv.account_id) || 'The account';
  if (acct?.status === 'needs_reauth') return `${name} needs to be reconnected before you can reply (Settings → Accounts).`;
  if (acct?.status === 'disconnected') return `${name} is disconnected. An admin can connect it again in Settings → Accounts.`;
  if (acct?.status === 'restricted') return `TikTok restricts messaging for ${name}${acct.status_reason ? `: ${acct.status_reason}` : '.'}`;
  const w = conv.window;
  if (w.blocked === 'never_opened') return 'The customer has not written yet. On TikTok only the customer can start a conversation.';
  const expires = w.expires_at ? Date.parse(w.expires_at) : null;
  if (w.blocked === 'window_closed' || !w.open || (expires !== null && expires <= now)) {
    const ago = expires !== null ? ` ${duration(now - expires)} ago` : '';
    return `The reply window closed${ago}. TikTok lets you reply again when the customer writes.`;
  }
  if (w.blocked === 'quota_exhausted' || w.quota_remaining === 0) {
    return `All ${w.quota_limit ?? ''} replies of this window are used. TikTok lets you reply again when the customer writes.`.replace('All  ', 'All ');
  }
  return null;
}

export function windowLine(conv: Conversation, now: number): string {
  const w = conv.window;
  const expires = w.expires_at ? Date.parse(w.expires_at) : null;
  const parts: string[] = [];
  if (expires !== null) parts.push(`Window closes in ${hoursLeft(expires - now)}`);
  if (w.quota_limit !== null && w.quota_remaining !== null) parts.push(`${w.quota_remaining} of ${w.quota_limit} replies left`);
  else parts.push('replies not limited');
  return parts.join(' · ');
}

export function Composer({ conv, send, replyTo, onClearReply }: Props) {
  const clockNow = useNow();
  const [precise, setPrecise] = useState(0);
  const now = Math.max(clockNow, precise);
  useSyncExternalStore(accounts.subscribe, accounts.getVersion);
  const [text, setTextState] = useState(() => drafts.get(conv.id) ?? '');
  const [image, setImage] = useState<Attached | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [dragging, setDragging] = useState(false);
  const [cannedOpen, setCannedOpen] = useState(false);
  const [cannedIndex, setCannedIndex] = useState(0);
  const ta = useRef<HTMLTextAreaElement>(null);
  const fileInput = useRef<HTMLInputElement>(null);
  const canned = useCanned();

  const setText = (v: string) => { setTextState(v); if (v) drafts.set(conv.id, v); else drafts.delete(conv.id); };

  // Disable the composer the moment the window closes, not at the next clock tick.
  const expires = conv.window.expires_at ? Date.parse(conv.window.expires_at) : null;
  useEffect(() => {
    if (expires === null) return;
    const ms = expires - Date.now();
    if (ms <= 0 || ms > 2 ** 31 - 1) return;
    const t = setTimeout(() => setPrecise(Date.now()), ms + 50);
    return () => clearTimeout(t);
  }, [expires]);

  useEffect(() => () => { if (image) URL.revokeObjectURL(image.url); }, [image]);
  useEffect(() => { if (replyTo) ta.current?.focus(); }, [replyTo]);

  const block = blockReason(conv, now);
  const noImages = conv.window.can_send_images === false;
  const imagesRefused = "TikTok doesn't allow images in this conversation (not available in the customer's or the account's region).";
  const len = codePoints(text);
  const over = len > MAX_TEXT;
  const slash = /^\/(\S*)$/.exec(text);
  const cannedFilter = slash ? slash[1].toLowerCase() : null;
  const cannedList: Canned[] = (cannedOpen || cannedFilter !== null)
    ? canned.filter((c) => cannedFilter === null || c.shortcut.toLowerCase().startsWith(cannedFilter) || c.text.toLowerCase().includes(cannedFilter))
    : [];
  const showCanned = !block && cannedList.length > 0 && (cannedOpen || cannedFilter !== null);

  async function attach(file: File | null | undefined) {
    setError(null);
    if (!file) return;
    if (noImages) { setError(imagesRefused); return; }
    const check = await checkImage(file);
    if (!check.ok) { setError(check.reason); return; }
    setImage({ bytes: check.bytes, type: check.type, name: file.name || (check.type === 'image/png' ? 'pasted.png' : 'pasted.jpg'), size: file.size, url: URL.createObjectURL(file) });
  }

  function pick(c: Canned) {
    const filled = fillCanned(c.text, contactName(conv.contact).replace(/^@/, ''));
    setText(cannedFilter !== null ? filled : text ? text + (text.endsWith(' ') ? '' : ' ') + filled : filled);
    setCannedOpen(false);
    setCannedIndex(0);
    ta.current?.focus();
  }

  async function submit() {
    if (block) return;
    const body = text.trim() ? text : '';
    if (!body && !image) return;
    if (over) { setError(`The text is ${len - MAX_TEXT} characters over TikTok's limit of ${MAX_TEXT}.`); return; }
    const needed = (image ? 1 : 0) + (body ? 1 : 0);
    const left = conv.window.quota_remaining;
    if (left !== null && needed > left) { setError(`An image and a text are ${needed} messages; ${left} ${left === 1 ? 'reply is' : 'replies are'} left in this window. Send one of them.`); return; }
    setError(null);
    const img = image;
    const reply = replyTo?.id;
    // Cleared at once: the reply shows in the thread and follows its status there.
    setText('');
    setImage(null);
    onClearReply();
    try {
      // TikTok quotes only in text replies: the quote goes with the text.
      if (img) await send({ conversation_id: conv.id, type: 'image', image: { data_base64: toBase64(img.bytes) } }, URL.createObjectURL(new Blob([img.bytes as BlobPart], { type: img.type })));
      if (body) await send({ conversation_id: conv.id, type: 'text', text: body, reply_to: reply }, null);
    } catch (err) {
      if (err instanceof ApiError && err.status >= 400 && err.status < 500 && err.status !== 429) {
        // Refused before sending: give the reply back with TikTok's rule.
        setError(err.message);
        if (body && !drafts.get(conv.id)) setText(body);
        if (img && err.details.field !== 'text') setImage(img);
      }
    }
  }

  function onKeyDown(e: React.KeyboardEvent<HTMLTextAreaElement>) {
    if (showCanned) {
      if (e.key === 'ArrowDown') { e.preventDefault(); setCannedIndex((i) => (i + 1) % cannedList.length); return; }
      if (e.key === 'ArrowUp') { e.preventDefault(); setCannedIndex((i) => (i - 1 + cannedList.length) % cannedList.length); return; }
      if (e.key === 'Enter' || e.key === 'Tab') { e.preventDefault(); pick(cannedList[Math.min(cannedIndex, cannedList.length - 1)]); return; }
      if (e.key === 'Escape') { e.preventDefault(); setCannedOpen(false); if (cannedFilter !== null) setText(''); return; }
    }
    if (e.key === 'Escape') { e.currentTarget.blur(); return; }
    if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      void submit();
    }
  }

  const describedBy = ['composer-status', 'composer-count', error ? 'composer-error' : ''].filter(Boolean).join(' ');
  return (
    <div className={cls('composer', dragging && 'dragging', block && 'blocked')}
      onDragOver={(e) => { if (!block && e.dataTransfer.types.includes('Files')) { e.preventDefault(); setDragging(true); } }}
      onDragLeave={() => setDragging(false)}
      onDrop={(e) => { if (block) return; e.preventDefault(); setDragging(false); void attach(e.dataTransfer.files[0]); }}>
      <p id="composer-status" className={cls('window-line', block ? 'blocked-reason' : '')} data-testid="composer-status">
        {block ?? windowLine(conv, now)}
      </p>
      {conv.assignee_id && !block && <AssigneeNote conv={conv} />}
      {replyTo && (
        <div className="replying small">
          <span>Replying to “{(replyTo.text ?? `[${replyTo.type}]`).slice(0, 80)}”</span>
          <button type="button" className="ghost icon" aria-label="Cancel the quoted reply" onClick={onClearReply}>×</button>
        </div>
      )}
      {image && (
        <div className="attachment">
          <img src={image.url} alt="" width={48} height={48} />
          <span className="small">{image.name} · {(image.size / 1024).toFixed(0)} KB</span>
          <button type="button" className="ghost icon" aria-label="Remove the image" onClick={() => setImage(null)}>×</button>
        </div>
      )}
      {showCanned && (
        <ul className="canned" role="listbox" aria-label="Canned responses" id="canned-list">
          {cannedList.map((c, i) => (
            <li key={c.shortcut} role="option" aria-selected={i === cannedIndex} className={cls(i === cannedIndex && 'active')}
              onMouseDown={(e) => { e.preventDefault(); pick(c); }}>
              <strong>/{c.shortcut}</strong> <span className="muted">{c.text.length > 90 ? c.text.slice(0, 90) + '…' : c.text}</span>
            </li>
          ))}
        </ul>
      )}
      <div className="compose-row">
        <label className="sr-only" htmlFor="composer-text">Reply to {contactName(conv.contact)}</label>
        <textarea id="composer-text" ref={ta} rows={3} value={text} disabled={!!block}
          placeholder={block ? 'Replies are disabled' : 'Write a reply…  ( / for canned responses)'}
          aria-describedby={describedBy} aria-invalid={over || undefined}
          aria-controls={showCanned ? 'canned-list' : undefined}
          onChange={(e) => { setText(e.target.value); setError(null); setCannedIndex(0); }}
          onKeyDown={onKeyDown}
          onPaste={(e) => {
            const file = [...e.clipboardData.files].find((f) => f.type.startsWith('image/'));
            if (file) { e.preventDefault(); void attach(file); }
          }} />
        <div className="compose-tools">
          <input ref={fileInput} id="composer-file" type="file" accept="image/png,image/jpeg" className="sr-only" tabIndex={-1} disabled={!!block || noImages}
            onChange={(e) => { void attach(e.target.files?.[0]); e.target.value = ''; }} />
          <button type="button" className="ghost icon" disabled={!!block || noImages} onClick={() => fileInput.current?.click()}
            aria-label={noImages ? imagesRefused : 'Attach an image (JPG or PNG, up to 3 MB)'} title={noImages ? imagesRefused : 'Attach an image'}>
            <svg width="20" height="20" viewBox="0 0 24 24" aria-hidden="true"><rect x="3" y="5" width="18" height="14" rx="2" fill="none" stroke="currentColor" strokeWidth="2" /><circle cx="9" cy="10" r="2" fill="currentColor" /><path d="M4 18l6-5 4 3 3-2 3 3" fill="none" stroke="currentColor" strokeWidth="2" /></svg>
          </button>
          <button type="button" className="ghost icon" disabled={!!block} aria-label="Canned responses" aria-expanded={cannedOpen} title="Canned responses" onClick={() => { setCannedOpen(!cannedOpen); setCannedIndex(0); ta.current?.focus(); }}>
            <svg width="20" height="20" viewBox="0 0 24 24" aria-hidden="true"><path d="M5 4h14v12H9l-4 4z" fill="none" stroke="currentColor" strokeWidth="2" /><path d="M8 8h8M8 12h5" stroke="currentColor" strokeWidth="2" /></svg>
          </button>
          <button type="button" className="primary" disabled={!!block || over || (!text.trim() && !image)} onClick={() => void submit()}>Send</button>
        </div>
      </div>
      <div className="compose-foot small">
        <span id="composer-count" className={cls('count', over && 'over')} aria-live={len > MAX_TEXT - 200 ? 'polite' : 'off'}>
          {len.toLocaleString()} / {MAX_TEXT.toLocaleString()}{over ? ` — ${len - MAX_TEXT} too many` : ''}
        </span>
        <span className="muted keys-hint">Enter sends · Shift+Enter new line · paste or drop an image</span>
      </div>
      <p id="composer-error" className="form-error" role="alert">{error}</p>
    </div>
  );
}

function AssigneeNote({ conv }: { conv: Conversation }) {
  const { session } = useSession();
  if (!conv.assignee_id || conv.assignee_id === session.user.id) return null;
  return <p className="assignee-note small">Assigned to {users.name(conv.assignee_id)}: they may be answering.</p>;
}
