import { useState } from 'react';
import { saveCanned, useCanned } from '../canned';

/** Canned responses of this user in this browser; `/shortcut` in the composer inserts one. */
export function CannedSettings() {
  const list = useCanned();
  const [shortcut, setShortcut] = useState('');
  const [text, setText] = useState('');
  const [err, setErr] = useState<string | null>(null);
  return (
    <section aria-labelledby="canned-title">
      <h2 id="canned-title">Canned responses</h2>
      <p className="muted">Type <kbd>/</kbd> and the shortcut in the composer. <code>{'{{name}}'}</code> becomes the customer's name. Saved in this browser.</p>
      <form className="card form-card" onSubmit={(e) => {
        e.preventDefault();
        const s = shortcut.trim().replace(/^\//, '');
        if (!/^[\w-]{1,30}$/.test(s)) { setErr('Shortcuts are letters, digits, - and _ (up to 30).'); return; }
        if (list.some((c) => c.shortcut === s)) { setErr(`/${s} exists already.`); return; }
        saveCanned([...list, { shortcut: s, text: text.trim() }]);
        setShortcut(''); setText(''); setErr(null);
      }}>
        <h3>Add a response</h3>
        <label htmlFor="cn-short">Shortcut</label>
        <input id="cn-short" required value={shortcut} onChange={(e) => setShortcut(e.target.value)} placeholder="e.g. shipping" />
        <label htmlFor="cn-text">Text</label>
        <textarea id="cn-text" required rows={3} maxLength={6000} value={text} onChange={(e) => setText(e.target.value)} />
        {err && <p className="form-error" role="alert">{err}</p>}
        <button type="submit" className="primary">Add</button>
      </form>
      <ul className="cards">
        {list.map((c) => (
          <li key={c.shortcut} className="card">
            <div className="card-head"><strong className="grow">/{c.shortcut}</strong>
              <button type="button" className="danger-outline" onClick={() => saveCanned(list.filter((x) => x.shortcut !== c.shortcut))} aria-label={`Delete /${c.shortcut}`}>Delete</button></div>
            <p className="pre">{c.text}</p>
          </li>
        ))}
      </ul>
    </section>
  );
}
