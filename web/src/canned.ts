import { useSyncExternalStore } from 'react';

/** Canned responses: saved in this browser, per signed-in user. `{{name}}` becomes the contact's name. */
export interface Canned { shortcut: string; text: string }

const DEFAULTS: Canned[] = [
  { shortcut: 'hi', text: 'Hi {{name}}, thanks for your message! How can I help?' },
  { shortcut: 'stock', text: "Let me check the stock for you, I'll be right back." },
  { shortcut: 'order', text: 'Could you send me your order number so I can look it up?' },
  { shortcut: 'thanks', text: 'Thank you for shopping with us, {{name}}! Anything else I can do for you?' },
];

let owner = 'anonymous';
let cache: Canned[] | null = null;
const listeners = new Set<() => void>();
const key = () => `dmgate.canned.${owner}`;

export function setCannedOwner(userId: string): void { owner = userId; cache = null; listeners.forEach((l) => l()); }

export function getCanned(): Canned[] {
  if (cache) return cache;
  try {
    const raw = localStorage.getItem(key());
    cache = raw ? (JSON.parse(raw) as Canned[]) : DEFAULTS;
  } catch { cache = DEFAULTS; }
  return cache;
}

export function saveCanned(list: Canned[]): void {
  cache = list;
  try { localStorage.setItem(key(), JSON.stringify(list)); } catch { /* storage full or blocked */ }
  listeners.forEach((l) => l());
}

const subscribe = (l: () => void) => { listeners.add(l); return () => { listeners.delete(l); }; };
export const useCanned = () => useSyncExternalStore(subscribe, getCanned);

export const fillCanned = (text: string, name: string) => text.replace(/\{\{\s*name\s*\}\}/g, name);
