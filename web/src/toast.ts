import { useSyncExternalStore } from 'react';

export interface Toast { id: number; kind: 'error' | 'info'; text: string }
let toasts: Toast[] = [];
let seq = 0;
const listeners = new Set<() => void>();
const emit = () => listeners.forEach((l) => l());

export function toast(text: string, kind: Toast['kind'] = 'info', ms = 6000): void {
  const t = { id: ++seq, kind, text };
  toasts = [...toasts.slice(-3), t];
  emit();
  setTimeout(() => dismiss(t.id), ms);
}
export function dismiss(id: number): void { toasts = toasts.filter((t) => t.id !== id); emit(); }
const subscribe = (l: () => void) => { listeners.add(l); return () => { listeners.delete(l); }; };
export const useToasts = () => useSyncExternalStore(subscribe, () => toasts);
