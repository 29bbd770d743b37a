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
          <section>
            <h3>Notes</h3>
            {contact.notes ? <p className="notes small">{contact.notes}</p> : <p className="muted small">No notes</p>}
          </section>
          <section>
            <h3>Attributes</h3>
            {attrs.length ? (
              <dl className="attrs small">
                {attrs.map(([k, v]) => <div key={k}><dt>{k}</dt><dd>{typeof v === 'string' ? v : JSON.stringify(v)}</dd></div>)}
              </dl>
            ) : <p className="muted small">No attributes</p>}
          </section>
          {contact.created_at && <p className="muted small">Contact since {fullTime(contact.created_at)}</p>}
        </>
      )}
    </aside>
  );
}
