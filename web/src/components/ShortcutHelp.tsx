import { useEffect, useRef } from 'react';

const KEYS: [string, string][] = [
  ['j / k', 'Next / previous conversation'],
  ['r', 'Reply (focus the composer)'],
  ['e', 'Resolve the conversation'],
  ['a', 'Assign to me'],
  ['/', 'Search contacts'],
  ['Enter', 'Send (Shift+Enter: new line)'],
  ['Esc', 'Leave the composer / close the conversation'],
  ['?', 'This help'],
];

export function ShortcutHelp({ onClose }: { onClose(): void }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
  }, []);
  return (
    <dialog ref={ref} className="dialog" aria-labelledby="shortcuts-title" onClose={onClose}>
      <h2 id="shortcuts-title">Keyboard shortcuts</h2>
      <dl className="shortcuts">
        {KEYS.map(([k, what]) => <div key={k}><dt><kbd>{k}</kbd></dt><dd>{what}</dd></div>)}
      </dl>
      <form method="dialog"><button type="submit" className="primary" autoFocus>Close</button></form>
    </dialog>
  );
}
