import { api } from './api';
import type { Account, Conversation, User } from './types';

type Listener = () => void;

/** A minimal observable: a version number bumped (at most once per frame) on change. */
class Observable {
  private listeners = new Set<Listener>();
  private scheduled = false;
  version = 0;
  subscribe = (l: Listener) => { this.listeners.add(l); return () => { this.listeners.delete(l); }; };
  getVersion = () => this.version;
  protected changed(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.version++;
      this.listeners.forEach((l) => l());
    });
  }
}

/**
 * Every conversation the inbox knows, by id. Lists load into it page by page; stream events mark
 * conversations dirty and a coalesced refetch brings the server's view (window, preview, assignee).
 */
export class ConversationStore extends Observable {
  readonly byId = new Map<string, Conversation>();
  private dirty = new Set<string>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private inflight = 0;

  /** When each row's data was requested: an older answer (a slow list page) never overwrites a newer one. */
  private stamps = new Map<string, number>();

  upsert(rows: Conversation[], requestedAt = performance.now()): void {
    let any = false;
    for (const c of rows) {
      if ((this.stamps.get(c.id) ?? -1) > requestedAt) continue;
      this.stamps.set(c.id, requestedAt);
      this.byId.set(c.id, c);
      any = true;
    }
    if (any) this.changed();
  }

  get(id: string): Conversation | undefined { return this.byId.get(id); }

  clear(): void { this.byId.clear(); this.stamps.clear(); this.changed(); }

  /** Refetch soon; many events for one conversation within the delay cost one request. */
  refresh(id: string, delayMs = 30): void {
    this.dirty.add(id);
    if (!this.timer) this.timer = setTimeout(() => this.flush(), delayMs);
  }

  private flush(): void {
    this.timer = null;
    const ids = [...this.dirty];
    this.dirty.clear();
    const next = () => {
      const id = ids.shift();
      if (!id) return;
      this.inflight++;
      const at = performance.now();
      api<Conversation>('GET', `/v1/conversations/${id}`)
        .then((c) => this.upsert([c], at))
        .catch(() => { /* deleted or no access: keep what we have */ })
        .finally(() => { this.inflight--; next(); });
    };
    for (let i = 0; i < 6; i++) next();
  }
}

export class UserStore extends Observable {
  readonly byId = new Map<string, User>();
  set(users: User[]): void { this.byId.clear(); for (const u of users) this.byId.set(u.id, u); this.changed(); }
  name(id: string | null | undefined): string {
    if (!id) return '';
    const u = this.byId.get(id);
    return u ? u.name || u.email : 'someone';
  }
  active(): User[] { return [...this.byId.values()].filter((u) => !u.disabled); }
}

export class AccountStore extends Observable {
  readonly byId = new Map<string, Account>();
  set(rows: Account[]): void { this.byId.clear(); for (const a of rows) this.byId.set(a.id, a); this.changed(); }
  label(id: string): string {
    const a = this.byId.get(id);
    return a ? (a.username ? '@' + a.username : a.display_name ?? a.external_id) : '';
  }
}

export const conversations = new ConversationStore();
export const users = new UserStore();
export const accounts = new AccountStore();
