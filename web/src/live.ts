import { api, listAll } from './api';
import { LiveStream, type StreamState } from './stream';
import { accounts, conversations, users } from './store';
import type { Account, Conversation, StreamEvent, User } from './types';

/**
 * The inbox's live data: users, accounts and open conversations loaded from the API, kept current
 * by the event stream. Components subscribe to the stores; the open thread subscribes to events.
 */
type EventListener = (e: StreamEvent) => void;
const eventListeners = new Set<EventListener>();
export const onStreamEvent = (l: EventListener) => { eventListeners.add(l); return () => { eventListeners.delete(l); }; };

const stateListeners = new Set<(s: StreamState) => void>();
let streamState: StreamState = 'connecting';
export const getStreamState = () => streamState;
export const onStreamState = (l: (s: StreamState) => void) => { stateListeners.add(l); return () => { stateListeners.delete(l); }; };

export type LoadState = { open: 'loading' | 'done' | 'error'; resolved: 'idle' | 'loading' | 'more' | 'done' | 'error'; error?: string };
let loadState: LoadState = { open: 'loading', resolved: 'idle' };
const loadListeners = new Set<() => void>();
export const getLoadState = () => loadState;
export const onLoadState = (l: () => void) => { loadListeners.add(l); return () => { loadListeners.delete(l); }; };
const setLoad = (patch: Partial<LoadState>) => { loadState = { ...loadState, ...patch }; loadListeners.forEach((l) => l()); };

let stream: LiveStream | null = null;
let resolvedCursor: string | null = null;
let generation = 0;

export async function loadUsers(): Promise<void> {
  users.set(await listAll<User>('/v1/users', { limit: 500 }));
}

export async function loadAccounts(): Promise<void> {
  accounts.set(await listAll<Account>('/v1/accounts', { limit: 200 }));
}

async function loadOpen(gen: number): Promise<void> {
  setLoad({ open: 'loading' });
  try {
    await listAll<Conversation>('/v1/conversations', { status: 'open', limit: 200 }, (rows, at) => { if (gen === generation) conversations.upsert(rows, at); });
    if (gen === generation) setLoad({ open: 'done' });
  } catch (err) {
    if (gen === generation) setLoad({ open: 'error', error: (err as Error).message });
  }
}

/** Resolved conversations are many and old: newest pages on demand. */
export async function loadMoreResolved(): Promise<void> {
  if (loadState.resolved === 'loading' || loadState.resolved === 'done') return;
  const gen = generation;
  setLoad({ resolved: 'loading' });
  try {
    const at = performance.now();
    const page = await api<{ data: Conversation[]; next_cursor: string | null }>('GET',
      `/v1/conversations?status=resolved&limit=200${resolvedCursor ? '&cursor=' + encodeURIComponent(resolvedCursor) : ''}`);
    if (gen !== generation) return;
    conversations.upsert(page.data, at);
    resolvedCursor = page.next_cursor;
    setLoad({ resolved: page.next_cursor ? 'more' : 'done' });
  } catch (err) {
    if (gen === generation) setLoad({ resolved: 'error', error: (err as Error).message });
  }
}

/** Server-side contact search, for conversations not loaded yet (e.g. old resolved ones). */
export async function searchContacts(q: string, signal: AbortSignal): Promise<void> {
  const contacts = await api<{ data: { id: string }[] }>('GET', `/v1/contacts?q=${encodeURIComponent(q)}&limit=20`, undefined, { signal });
  await Promise.all(contacts.data.map(async (c) => {
    const at = performance.now();
    const page = await api<{ data: Conversation[] }>('GET', `/v1/conversations?contact_id=${c.id}&limit=50`, undefined, { signal });
    conversations.upsert(page.data, at);
  }));
}

function resync(): void {
  generation++;
  resolvedCursor = null;
  setLoad({ resolved: 'idle' });
  void loadOpen(generation);
  void loadAccounts().catch(() => undefined);
  void loadUsers().catch(() => undefined);
  // Conversations already on screen (resolved ones too) may have changed while we were away.
  for (const id of conversations.byId.keys()) if (conversations.byId.get(id)?.status === 'resolved') conversations.refresh(id, 200);
  eventListeners.forEach((l) => l({ id: '', event: 'resync', account_id: null, provider: 'dmgate', timestamp: Date.now() / 1000 }));
}

function handle(e: StreamEvent): void {
  if (e.conversation_id) conversations.refresh(e.conversation_id);
  if (e.event.startsWith('account.')) void loadAccounts().catch(() => undefined);
  eventListeners.forEach((l) => l(e));
}

export function startLive(onUnauthorized: () => void): () => void {
  generation++;
  stream = new LiveStream({
    onEvent: handle,
    onState: (s) => { streamState = s; stateListeners.forEach((l) => l(s)); },
    onResync: resync,
    onUnauthorized,
  });
  // The stream first, then the lists: an event that lands during the load is applied after it.
  stream.start();
  void loadOpen(generation);
  void loadUsers().catch(() => undefined);
  void loadAccounts().catch(() => undefined);
  return () => {
    stream?.stop();
    stream = null;
    generation++;
    conversations.clear();
    resolvedCursor = null;
    setLoad({ open: 'loading', resolved: 'idle' });
  };
}
