import { useSyncExternalStore } from 'react';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

/** "45 s", "12 min", "3 h 20 min", "2 d 4 h": compact, for rows and badges. */
export function duration(ms: number): string {
  const abs = Math.max(0, ms);
  if (abs < MIN) return `${Math.floor(abs / 1000)} s`;
  if (abs < HOUR) return `${Math.floor(abs / MIN)} min`;
  if (abs < DAY) {
    const h = Math.floor(abs / HOUR);
    const m = Math.floor((abs % HOUR) / MIN);
    return h < 10 && m ? `${h} h ${m} min` : `${h} h`;
  }
  const d = Math.floor(abs / DAY);
  const h = Math.floor((abs % DAY) / HOUR);
  return h ? `${d} d ${h} h` : `${d} d`;
}

/** Hours for the window line ("closes in 31 h"), minutes when under one hour. */
export function hoursLeft(ms: number): string {
  if (ms < HOUR) return `${Math.max(1, Math.ceil(ms / MIN))} min`;
  return `${Math.floor(ms / HOUR)} h`;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' });
const dateYearFmt = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'long', year: 'numeric' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

export const clock = (iso: string) => timeFmt.format(new Date(iso));
export const fullTime = (iso: string | number) => fullFmt.format(new Date(iso));

export function dayKey(iso: string): string {
  const d = new Date(iso);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

export function dayLabel(iso: string, now = Date.now()): string {
  const d = new Date(iso);
  const today = new Date(now);
  const startOf = (x: Date) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  const diff = Math.round((startOf(today) - startOf(d)) / DAY);
  if (diff === 0) return 'Today';
  if (diff === 1) return 'Yesterday';
  return d.getFullYear() === today.getFullYear() ? dateFmt.format(d) : dateYearFmt.format(d);
}

/** One shared ticking clock, so relative times re-render together (every 15 s). */
let now = Date.now();
const listeners = new Set<() => void>();
setInterval(() => { now = Date.now(); listeners.forEach((l) => l()); }, 15_000);
const subscribe = (l: () => void) => { listeners.add(l); return () => { listeners.delete(l); }; };
export const useNow = () => useSyncExternalStore(subscribe, () => now);
