import { useCallback, useEffect, useLayoutEffect, useRef, useState, useSyncExternalStore } from 'react';
import { api, errorText } from '../api';
import { linkClick } from '../router';
import { accounts, conversations, users } from '../store';
import { useSession } from '../session';
import { toast } from '../toast';
import { clock, dayKey, dayLabel, fullTime } from '../time';
import { bodyOf, isLocal, previewOf, useThreadMessages, type SendBody, type ThreadMessage } from '../thread-data';
import type { Conversation, Message, Referral } from '../types';
import { cls, contactName, referralSummary } from '../util';
import { Composer } from './Composer';

interface Props { id: string; contactOpen: boolean; onToggleContact(): void }

export function Thread({ id, contactOpen, onToggleContact }: Props) {
  useSyncExternalStore(conversations.subscribe, conversations.getVersion);
  useSyncExternalStore(users.subscribe, users.getVersion);
  const conv = conversations.get(id);
  const [missing, setMissing] = useState<string | null>(null);
  const t = useThreadMessages(id);
  const [replyTo, setReplyTo] = useState<Message | null>(null);

  // Loaded when not listed yet; and shown afresh when its window is open but whether images can go is
  // not known yet (the list does not ask TikTok; showing the conversation does, and may answer before
  // TikTok does: then once more a little later).
  useEffect(() => {
    const unknownImages = (c: Conversation | undefined) => !!c && c.window.open && c.window.can_send_images === null;
    const listed = conversations.get(id);
    if (listed && !unknownImages(listed)) return;
    let cancelled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = (again: boolean) => {
      const at = performance.now();
      api<Conversation>('GET', `/v1/conversations/${id}`).then((c) => {
        if (cancelled) return;
        conversations.upsert([c], at);
        if (again && unknownImages(c)) timer = setTimeout(() => load(false), 1500);
      }, (err) => { if (!cancelled && !conversations.get(id)) setMissing(errorText(err)); });
    };
    load(true);
    return () => { cancelled = true; clearTimeout(timer); };
  }, [id]);

  const send = useCallback((body: SendBody, preview: string | null) => t.send(body, preview), [t]);

  if (!conv) {
    return (
      <section className="thread-pane" aria-label="Conversation" aria-busy={!missing}>
        <div className="thread-head"><a className="back" href="/" onClick={(e) => linkClick(e, '/')}>← Conversations</a></div>
        {missing ? <p className="empty" role="alert">{missing}</p> : <p className="empty">Loading…</p>}
      </section>
    );
  }
  const name = contactName(conv.contact);
  return (
    <section className="thread-pane" aria-label={`Conversation with ${name}`} data-testid="thread">
      <ThreadHeader conv={conv} contactOpen={contactOpen} onToggleContact={onToggleContact} />
      {conv.referral && <ReferralBanner r={conv.referral} />}
      <MessageList conv={conv} t={t} onReply={setReplyTo} />
      <Composer conv={conv} send={send} replyTo={replyTo} onClearReply={() => setReplyTo(null)} />
    </section>
  );
}

function ThreadHeader({ conv, contactOpen, onToggleContact }: { conv: Conversation; contactOpen: boolean; onToggleContact(): void }) {
  const { session } = useSession();
  const me = session.user.id;
  const [busy, setBusy] = useState(false);
  const act = async (path: string, body?: unknown, done?: string) => {
    setBusy(true);
    try {
      const at = performance.now();
      conversations.upsert([await api<Conversation>('POST', `/v1/conversations/${conv.id}/${path}`, body ?? {})], at);
      if (done) toast(done);
    } catch (err) {
      toast(errorText(err), 'error');
    } finally {
      setBusy(false);
    }
  };
  const people = users.active();
  const assigneeKnown = !conv.assignee_id || people.some((u) => u.id === conv.assignee_id);
  return (
    <header className="thread-head">
      <a className="back" href="/" onClick={(e) => linkClick(e, '/')} aria-label="Back to conversations">←</a>
      <div className="who">
        <h2>{contactName(conv.contact)}</h2>
        <p className="muted small">
          {conv.contact.username && <span>@{conv.contact.username}</span>}
          <span> · to {accounts.label(conv.account_id) || 'account'}</span>
          <span className={cls('status-pill', conv.status)}>{conv.status === 'open' ? 'Open' : 'Resolved'}</span>
        </p>
      </div>
      <div className="actions" aria-busy={busy}>
        {conv.assignee_id !== me && (
          <button type="button" id="action-assign-me" disabled={busy} onClick={() => void act('assign', {}, 'Assigned to you')} title="Assign to me (a)">Assign to me</button>
        )}
        <label className="sr-only" htmlFor="assignee-select">Assignee</label>
        <select id="assignee-select" value={conv.assignee_id ?? ''} disabled={busy}
          onChange={(e) => void act('assign', { assignee_id: e.target.value || null }, e.target.value ? `Assigned to ${users.name(e.target.value)}` : 'Unassigned')}>
          <option value="">Unassigned</option>
          {people.map((u) => <option key={u.id} value={u.id}>{(u.name || u.email) + (u.id === me ? ' (me)' : '')}</option>)}
          {!assigneeKnown && conv.assignee_id && <option value={conv.assignee_id}>{users.name(conv.assignee_id)}</option>}
        </select>
        {conv.status === 'open'
          ? <button type="button" id="action-resolve" className="primary" disabled={busy} onClick={() => void act('resolve', undefined, 'Resolved')} title="Resolve (e)">Resolve</button>
          : <button type="button" id="action-reopen" disabled={busy} onClick={() => void act('reopen', undefined, 'Reopened')}>Reopen</button>}
        <button type="button" className="ghost icon" aria-pressed={contactOpen} aria-label="Contact details" title="Contact details" onClick={onToggleContact}>
          <svg width="20" height="20" viewBox="0 0 24 24" aria-hidden="true"><circle cx="12" cy="8" r="4" fill="none" stroke="currentColor" strokeWidth="2" /><path d="M4 21c0-4 4-6 8-6s8 2 8 6" fill="none" stroke="currentColor" strokeWidth="2" /></svg>
        </button>
      </div>
    </header>
  );
}

export function ReferralBanner({ r }: { r: Referral }) {
  const s = r.short_link;
  const ad = r.ad;
  return (
    <div className="referral" role="note" data-testid="referral">
      <strong>{referralSummary(r)}</strong>
      {ad?.ad_id && <span className="muted small"> · ad {ad.ad_id}{ad.advertiser_id ? ` · advertiser ${ad.advertiser_id}` : ''}</span>}
      {ad?.embed_url && <> · <a href={ad.embed_url} target="_blank" rel="noopener noreferrer">view ad</a></>}
      {s?.prefilled_message && (
        <span className="small"> · prefilled: “{s.prefilled_message}”{s.prefilled_message_audit_status && s.prefilled_message_audit_status !== 'PASS' ? ` (audit ${s.prefilled_message_audit_status.toLowerCase()})` : ''}</span>
      )}
    </div>
  );
}

type T = ReturnType<typeof useThreadMessages>;

function MessageList({ conv, t, onReply }: { conv: Conversation; t: T; onReply(m: Message): void }) {
  const ref = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  const preserve = useRef<number | null>(null);
  const lastId = useRef<string | null>(null);
  const [newBelow, setNewBelow] = useState(false);
  const all: ThreadMessage[] = [...t.messages, ...t.locals];
  const byId = new Map(t.messages.map((m) => [m.id, m]));
  const last = all[all.length - 1]?.id ?? null;

  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    if (preserve.current !== null) {
      el.scrollTop += el.scrollHeight - preserve.current;
      preserve.current = null;
      return;
    }
    if (last !== lastId.current) {
      const mine = all[all.length - 1]?.direction === 'outbound' && (isLocal(all[all.length - 1]) || all[all.length - 1].source === 'inbox');
      if (atBottom.current || lastId.current === null || mine) {
        el.scrollTop = el.scrollHeight;
        setNewBelow(false);
      } else setNewBelow(true);
      lastId.current = last;
    }
  });

  const loadOlder = async () => {
    if (ref.current) preserve.current = ref.current.scrollHeight;
    try { await t.loadOlder(); } catch (err) { preserve.current = null; toast(errorText(err), 'error'); }
  };

  const items: React.ReactNode[] = [];
  let day = '';
  for (const m of all) {
    const at = m.created_at ?? new Date().toISOString();
    const k = dayKey(at);
    if (k !== day) {
      day = k;
      items.push(<li key={'day-' + k} className="day" role="separator" aria-label={dayLabel(at)}><span>{dayLabel(at)}</span></li>);
    }
    items.push(<MessageItem key={m.id} m={m} quoted={m.reply_to ? byId.get(m.reply_to) ?? null : null} t={t} onReply={onReply} />);
  }

  return (
    <div className="messages" ref={ref} tabIndex={0} aria-label="Messages"
      onScroll={(e) => {
        const el = e.currentTarget;
        atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
        if (atBottom.current && newBelow) setNewBelow(false);
        if (el.scrollTop < 200 && t.hasOlder && !t.loadingOlder && t.state === 'ready') void loadOlder();
      }}>
      {t.hasOlder && (
        <div className="older"><button type="button" className="ghost" onClick={() => void loadOlder()} disabled={t.loadingOlder}>{t.loadingOlder ? 'Loading…' : 'Load earlier messages'}</button></div>
      )}
      {t.state === 'loading' && <p className="empty" aria-busy="true">Loading messages…</p>}
      {t.state === 'error' && <p className="empty" role="alert">Could not load the messages: {t.error} <button type="button" onClick={() => void t.reload()}>Retry</button></p>}
      {t.state === 'ready' && all.length === 0 && <p className="empty">No messages yet{conv.referral ? ': the customer came in through a referral and has not written.' : '.'}</p>}
      <ol className="msgs" role="log" aria-live="polite" aria-relevant="additions" aria-busy={t.state === 'loading'}>{items}</ol>
      {newBelow && (
        <button type="button" className="new-below" onClick={() => { const el = ref.current; if (el) el.scrollTop = el.scrollHeight; setNewBelow(false); }}>New messages ↓</button>
      )}
    </div>
  );
}

const SOURCE: Record<string, string> = { api: 'API', auto_reply: 'Auto-reply', tiktok_app: 'TikTok app', inbox: 'Inbox', customer: '' };

function MessageItem({ m, quoted, t, onReply }: { m: ThreadMessage; quoted: Message | null; t: T; onReply(m: Message): void }) {
  const out = m.direction === 'outbound';
  const local = isLocal(m) ? m : null;
  const failed = m.status === 'failed';
  const by = out ? (m.source === 'inbox' && m.sent_by ? users.name(m.sent_by) : SOURCE[m.source] ?? m.source) : '';
  const reason = local?.local.error?.message ?? m.error?.message ?? (m.error?.code ? String(m.error.code) : null);

  const retry = async () => {
    try {
      if (local) { await t.send(local.local.body, local.local.previewUrl, local); return; }
      const body = bodyOf(m.id) ?? resendBody(m);
      if (!body) { toast('This message cannot be re-sent from here; send it again from the composer.', 'error'); return; }
      await t.send({ ...body, conversation_id: m.conversation_id }, previewOf(m.id) ?? null);
    } catch { /* shown on the local message */ }
  };

  return (
    <li className={cls('msg', out ? 'out' : 'in', failed && 'failed', local && 'pending')} id={'msg-' + m.id}
      data-message-id={m.id} data-status={m.status} data-type={m.type}>
      <div className="bubble">
        {m.reply_to && <Quote quoted={quoted} />}
        {m.referral && <p className="msg-ref small">{referralSummary(m.referral)}</p>}
        <Content m={m} />
      </div>
      <div className="meta small">
        {m.created_at && <time dateTime={m.created_at} title={fullTime(m.created_at)}>{clock(m.created_at)}</time>}
        {by && <span className="by">{by}</span>}
        {out && <Tick status={m.status} />}
        {!out && !local && <button type="button" className="link small reply-btn" onClick={() => onReply(m)} aria-label="Reply to this message">Reply</button>}
      </div>
      {failed && (
        <div className="fail-reason small" role="alert">
          <span>Not sent{reason ? `: ${reason}` : ''}</span>
          <button type="button" className="link" onClick={() => void retry()}>Retry</button>
          {local && <button type="button" className="link" onClick={() => t.discard(local.id)}>Discard</button>}
        </div>
      )}
    </li>
  );
}

function resendBody(m: Message): SendBody | null {
  if (m.type === 'text' && m.text) return { conversation_id: m.conversation_id, type: 'text', text: m.text, ...(m.reply_to ? { reply_to: m.reply_to } : {}) };
  if (m.type === 'image' && typeof m.media?.id === 'string') return { conversation_id: m.conversation_id, type: 'image', image: { media_id: m.media.id } };
  if (m.type === 'share_post' && m.share_post?.item_id) return { conversation_id: m.conversation_id, type: 'share_post', share_post: { item_id: m.share_post.item_id } };
  return null;
}

function Quote({ quoted }: { quoted: Message | null }) {
  const text = quoted ? (quoted.text ?? `[${quoted.type.replace('_', ' ')}]`) : 'an earlier message';
  return (
    <blockquote className="quote small">
      {quoted
        ? <a href={'#msg-' + quoted.id} onClick={(e) => { e.preventDefault(); document.getElementById('msg-' + quoted.id)?.scrollIntoView({ block: 'center' }); }}>
            <span className="sr-only">In reply to: </span>{text.length > 140 ? text.slice(0, 140) + '…' : text}
          </a>
        : <span>In reply to {text}</span>}
    </blockquote>
  );
}

function Content({ m }: { m: ThreadMessage }) {
  switch (m.type) {
    case 'text':
      return <p className="text">{m.text}</p>;
    case 'image': {
      const url = (typeof m.media?.url === 'string' ? m.media.url : null) ?? previewOf(m.id) ?? null;
      return url
        ? <a className="img-box" href={url} target="_blank" rel="noopener noreferrer"><img src={url} alt={m.direction === 'inbound' ? 'Image from the customer' : 'Image sent'} loading="lazy" width={240} height={180} /></a>
        : <p className="text muted">[image]</p>;
    }
    case 'share_post': {
      const sp = m.share_post ?? {};
      const href = sp.embed_url || (sp.item_id ? `https://www.tiktok.com/embed/v2/${sp.item_id}` : null);
      return (
        <div className="post-card">
          <span className="post-icon" aria-hidden="true">▶</span>
          <span>
            <strong>Shared a TikTok post</strong>
            {sp.item_id && <span className="muted small"> · {sp.item_id}</span>}
            {href && <><br /><a href={href} target="_blank" rel="noopener noreferrer">Open the post</a></>}
          </span>
        </div>
      );
    }
    case 'template':
      return <p className="text"><span className="muted">[template]</span> {m.text ?? summarizeTemplate(m.template)}</p>;
    default: {
      const u = m.unsupported;
      const media = typeof m.media?.url === 'string' ? m.media.url : null;
      const link = u?.link ?? media;
      return (
        <p className="text unsupported">
          {m.text ?? `[${u?.original_type ?? m.type} message]`}
          {link && <> <a href={link} target="_blank" rel="noopener noreferrer">Open {u?.original_type ?? 'attachment'}</a></>}
        </p>
      );
    }
  }
}

function summarizeTemplate(t: unknown): string {
  if (!t || typeof t !== 'object') return '';
  const o = t as Record<string, unknown>;
  const title = typeof o.title === 'string' ? o.title : typeof o.text === 'string' ? o.text : '';
  return title || JSON.stringify(t).slice(0, 200);
}

const TICKS: Record<string, { label: string; icon: string }> = {
  queued: { label: 'Sending', icon: 'clock' },
  sending: { label: 'Sending', icon: 'clock' },
  held: { label: 'Held until the account is reconnected', icon: 'clock' },
  sent: { label: 'Sent', icon: 'one' },
  read: { label: 'Read', icon: 'two' },
  failed: { label: 'Failed', icon: 'fail' },
};

function Tick({ status }: { status: string }) {
  const t = TICKS[status] ?? { label: status, icon: 'one' };
  return (
    <span className={cls('tick', 'tick-' + status)} title={t.label} data-testid="tick">
      <svg width="18" height="12" viewBox="0 0 18 12" aria-hidden="true">
        {t.icon === 'clock' && <><circle cx="6" cy="6" r="4.5" fill="none" stroke="currentColor" strokeWidth="1.4" /><path d="M6 3.5V6l1.8 1.2" fill="none" stroke="currentColor" strokeWidth="1.4" /></>}
        {t.icon === 'one' && <path d="M2 6.5l3 3L11 2.5" fill="none" stroke="currentColor" strokeWidth="1.8" />}
        {t.icon === 'two' && <><path d="M1 6.5l3 3L10 2.5" fill="none" stroke="currentColor" strokeWidth="1.8" /><path d="M7 9.5L13 2.5" fill="none" stroke="currentColor" strokeWidth="1.8" /><path d="M5.5 6.5" /></>}
        {t.icon === 'fail' && <><path d="M6 1L11 11H1z" fill="none" stroke="currentColor" strokeWidth="1.4" /><path d="M6 4.5v3M6 9v.5" stroke="currentColor" strokeWidth="1.4" /></>}
      </svg>
      <span className="tick-label">{t.label}</span>
    </span>
  );
}
