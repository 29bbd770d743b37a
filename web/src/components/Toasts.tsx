import { dismiss, useToasts } from '../toast';

/** Announced politely; errors assertively. Fixed position: nothing else moves. */
export function Toasts() {
  const list = useToasts();
  return (
    <div className="toasts">
      <div role="status" aria-live="polite">
        {list.filter((t) => t.kind === 'info').map((t) => <Item key={t.id} id={t.id} text={t.text} kind="info" />)}
      </div>
      <div role="alert" aria-live="assertive">
        {list.filter((t) => t.kind === 'error').map((t) => <Item key={t.id} id={t.id} text={t.text} kind="error" />)}
      </div>
    </div>
  );
}

function Item({ id, text, kind }: { id: number; text: string; kind: string }) {
  return (
    <div className={`toast toast-${kind}`}>
      <span>{text}</span>
      <button type="button" className="ghost icon" aria-label="Dismiss" onClick={() => dismiss(id)}>×</button>
    </div>
  );
}
