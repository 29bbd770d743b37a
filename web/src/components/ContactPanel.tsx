import { useEffect, useState, useSyncExternalStore } from 'react';
import { api, errorText } from '../api';
import { onStreamEvent } from '../live';
import { linkClick } from '../router';
import { accounts, conversations } from '../store';
import { fullTime } from '../time';
import type { Contact } from '../types';
import { contactName, hue, initials, referralSummary } from '../util';

/** Who the customer is: avatar, username, follower, first referral, other conversations, notes, attributes. */
export function ContactPanel({ conversationId, onClose }: { conversationId: string; onClose(): void }) {
  useSyncExternalStore(conversations.subscribe, conversations.getVersion);
  const conv = conversations.get(conversationId);
  const contactId = conv?.contact.id;
  const [contact, setContact] = useState<Contact | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [avatarFailed, setAvatarFailed] = useState(false);

  useEffect(() => {
    if (!contactId) return;
    let alive = true;
    const load = () => api<Contact>('GET', `/v1/contacts/${contactId}`).then((c) => { if (alive) { setContact(c); setError(null); } }, (err) => { if (alive) setError(errorText(err)); });
    setContact(null);
    setAvatarFailed(false);
    void load();
    // New conversations of this contact, or a referral, show up without a reload.
    const off = onStreamEvent((e) => {
      const c = e.contact as { id?: string } | undefined;
      if (c?.id === contactId && (e.event === 'conversation.created' || e.event === 'conversation.referral' || e.event === 'contact.created')) void load();
    });
    return () => { alive = false; off(); };
  }, [contactId]);

  const others = (contact?.conversations ?? []).filter((c) => c.id !== conversationId);
  const ref = contact?.first_referral;
  const attrs = Object.entries(contact?.attributes ?? {});
  return (
    <aside className="contact-pane" aria-label="Contact details" data-testid="contact-panel">
      <div className="contact-head">
        <h2 className="sr-only">Contact</h2>
        <button type="button" className="ghost icon close" aria-label="Close contact details" onClick={onClose}>×</button>
        {contact?.avatar_url && !avatarFailed
          ? <img className="avatar lg" src={contact.avatar_url} alt="" width={64} height={64} referrerPolicy="no-referrer" onError={() => setAvatarFailed(true)} />
          : <span className="avatar lg" aria-hidden="true" style={{ background: `hsl(${hue(contactId ?? '')} 45% 38%)` }}>{initials(conv ? (conv.contact.display_name || conv.contact.username || '?') : '?')}</span>}
        <p className="contact-name">{conv ? contactName(conv.contact) : '…'}</p>
        {conv?.contact.username && (
          <p className="muted small">
            <a href={`https://www.tiktok.com/@${encodeURIComponent(conv.contact.username)}`} target="_blank" rel="noopener noreferrer">
              {conv.contact.display_name ? '@' + conv.contact.username : 'Profile on TikTok'}
            </a>
          </p>
        )}
        {conv && <p><span className={conv.contact.is_follower ? 'badge ok' : 'badge'}>{conv.contact.is_follower ? 'Follows you' : 'Not a follower'}</span></p>}
      </div>
      {error && <p className="form-error" role="alert">{error}</p>}
      {contact && (
        <>
          <section>
            <h3>First came from</h3>
            {ref ? (
              <div className="small">
                <p>{referralSummary(ref)}</p>
                {ref.short_link?.prefilled_message && <p className="muted">Prefilled: “{ref.short_link.prefilled_message}”</p>}
                {ref.at && <p className="muted">{fullTime(ref.at)}</p>}
              </div>
            ) : <p className="muted small">Direct message (no ad or link)</p>}
          </section>
          <section>
            <h3>Other conversations</h3>
            {others.length ? (
              <ul className="plain small">
                {others.map((o) => (
                  <li key={o.id}><a href={`/c/${o.id}`} onClick={(e) => linkClick(e, `/c/${o.id}`)}>{accounts.label(o.account_id) || o.account_id}</a> <span className="muted">· {o.status}</span></li>
                ))}
              </ul>
            ) : <p className="muted small">None</p>}
          </section>
          <NotesEditor contact={contact} onSaved={setContact} />
          <section>
            <h3>Attributes</h3>
            {attrs.length ? (
              <dl className="attrs small">
                {attrs.map(([k, v]) => (
                  <div key={k}>
                    <dt>{k}</dt>
                    <dd>
                      {typeof v === 'string' ? v : JSON.stringify(v)}{' '}
                      <button type="button" className="ghost small" aria-label={`Remove attribute ${k}`}
                        onClick={() => void api<Contact>('PATCH', `/v1/contacts/${contact.id}`, { attributes: { [k]: null } }).then(setContact, (err) => setError(errorText(err)))}>×</button>
                    </dd>
                  </div>
                ))}
              </dl>
            ) : <p className="muted small">No attributes</p>}
            <AttributeAdder contactId={contact.id} onSaved={setContact} onError={setError} />
          </section>
          {contact.created_at && <p className="muted small">Contact since {fullTime(contact.created_at)}</p>}
        </>
      )}
    </aside>
  );
}

/** Team notes about the customer, saved on demand (shared by every agent). */
function NotesEditor({ contact, onSaved }: { contact: Contact; onSaved(c: Contact): void }) {
  const [draft, setDraft] = useState(contact.notes ?? '');
  const [state, setState] = useState<'idle' | 'saving' | 'saved' | string>('idle');
  useEffect(() => { setDraft(contact.notes ?? ''); setState('idle'); }, [contact.id, contact.notes]);
  const dirty = draft !== (contact.notes ?? '');
  const save = () => {
    setState('saving');
    api<Contact>('PATCH', `/v1/contacts/${contact.id}`, { notes: draft.trim() ? draft : null })
      .then((c) => { onSaved(c); setState('saved'); }, (err) => setState(errorText(err)));
  };
  return (
    <section>
      <h3><label htmlFor="contact-notes">Notes</label></h3>
      <textarea id="contact-notes" className="notes-input small" rows={3} value={draft} maxLength={10000}
        placeholder="Sizes, preferences, order numbers…" onChange={(e) => { setDraft(e.target.value); setState('idle'); }} />
      <div className="row-actions">
        <button type="button" className="small" disabled={!dirty || state === 'saving'} onClick={save}>Save notes</button>
        <span className="muted small" role="status">{state === 'saving' ? 'Saving…' : state === 'saved' ? 'Saved' : state === 'idle' ? '' : state}</span>
      </div>
    </section>
  );
}

function AttributeAdder({ contactId, onSaved, onError }: { contactId: string; onSaved(c: Contact): void; onError(e: string): void }) {
  const [key, setKey] = useState('');
  const [value, setValue] = useState('');
  return (
    <form className="attr-add" onSubmit={(e) => {
      e.preventDefault();
      if (!key.trim()) return;
      api<Contact>('PATCH', `/v1/contacts/${contactId}`, { attributes: { [key.trim()]: value } })
        .then((c) => { onSaved(c); setKey(''); setValue(''); }, (err) => onError(errorText(err)));
    }}>
      <label className="sr-only" htmlFor="attr-key">Attribute name</label>
      <input id="attr-key" className="small" placeholder="name" value={key} maxLength={100} onChange={(e) => setKey(e.target.value)} />
      <label className="sr-only" htmlFor="attr-value">Attribute value</label>
      <input id="attr-value" className="small" placeholder="value" value={value} maxLength={1000} onChange={(e) => setValue(e.target.value)} />
      <button type="submit" className="small" disabled={!key.trim()}>Add</button>
    </form>
  );
}
