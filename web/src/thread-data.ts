import { useCallback, useEffect, useRef, useState } from 'react';
import { api, ApiError } from './api';
import { onStreamEvent } from './live';
import { conversations } from './store';
import type { Message, Page } from './types';

/** A reply typed here and not yet accepted by the server (or refused by it). */
export interface LocalMessage extends Message {
  local: { state: 'sending' | 'refused'; error: ApiError | null; body: SendBody; previewUrl: string | null; idempotencyKey: string };
}
export type ThreadMessage = Message | LocalMessage;
export const isLocal = (m: ThreadMessage): m is LocalMessage => 'local' in m;

export interface SendBody {
  conversation_id: string;
  type: 'text' | 'image' | 'share_post';
  text?: string;
  image?: { data_base64?: string; media_id?: string; url?: string };
  share_post?: { item_id: string };
  reply_to?: string;
}

const PAGE = 50;
const order = (a: Message, b: Message) => (a.created_at ?? '').localeCompare(b.created_at ?? '') || a.id.localeCompare(b.id);

/** What was sent from this tab, by message id: lets a failed image be retried with its bytes. */
const sentBodies = new Map<string, SendBody>();
export const bodyOf = (messageId: string) => sentBodies.get(messageId);
/** Local previews of images sent from this tab, for as long as the server shows no copy of its own. */
const previews = new Map<string, string>();
export const previewOf = (messageId: string) => previews.get(messageId);

/**
 * The messages of one conversation: the newest page first, older pages on demand, kept current
 * by stream events (new messages, status changes), plus optimistic local replies.
 */
export function useThreadMessages(conversationId: string) {
  const [byId, setById] = useState<Map<string, Message>>(new Map());
  const [locals, setLocals] = useState<LocalMessage[]>([]);
  const [olderCursor, setOlderCursor] = useState<string | null>(null);
  const [state, setState] = useState<'loading' | 'ready' | 'error'>('loading');
  const [error, setError] = useState<string | null>(null);
  const [loadingOlder, setLoadingOlder] = useState(false);
  const refreshTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  const alive = useRef(true);

  const current = useRef(byId);
  current.current = byId;

  /**
   * Adds or updates messages. The newest page that shares nothing with what is shown (more than a
   * page arrived while away) replaces it, with its own cursor: the thread never shows a gap.
   */
  const merge = useCallback((rows: Message[], replaceIfDisjoint: boolean, cursor?: string | null) => {
    const prev = current.current;
    const disjoint = replaceIfDisjoint && prev.size > 0 && rows.length > 0 && !rows.some((r) => prev.has(r.id));
    if (disjoint && cursor !== undefined) setOlderCursor(cursor);
    setById((p) => {
      const next = disjoint ? new Map<string, Message>() : new Map(p);
      for (const r of rows) next.set(r.id, r);
      return next;
    });
  }, []);

  const loadNewest = useCallback(async () => {
    try {
      const page = await api<Page<Message>>('GET', `/v1/conversations/${conversationId}/messages?order=desc&limit=${PAGE}`);
      if (!alive.current) return;
      merge(page.data, true, page.next_cursor);
      return page;
    } catch (err) {
      if (!alive.current) return;
      setError(err instanceof Error ? err.message : String(err));
      setState((s) => (s === 'loading' ? 'error' : s));
    }
  }, [conversationId, merge]);

  useEffect(() => {
    alive.current = true;
    setById(new Map());
    setLocals([]);
    setState('loading');
    setError(null);
    void loadNewest().then((page) => {
      if (!page || !alive.current) return;
      setOlderCursor(page.next_cursor);
      setState('ready');
    });
    const off = onStreamEvent((e) => {
      if (e.event === 'resync') { schedule(); return; }
      if (e.conversation_id !== conversationId) return;
      if (e.event === 'message.status' && e.message_id) {
        const id = e.message_id;
        setById((prev) => {
          const m = prev.get(id);
          if (!m) return prev;
          const next = new Map(prev);
          next.set(id, { ...m, status: (e.status as Message['status']) ?? m.status, error: e.error ?? m.error });
          return next;
        });
      }
      if (e.event.startsWith('message.')) schedule();
    });
    function schedule() {
      if (refreshTimer.current) return;
      refreshTimer.current = setTimeout(() => { refreshTimer.current = null; void loadNewest(); }, 40);
    }
    return () => {
      alive.current = false;
      off();
      if (refreshTimer.current) clearTimeout(refreshTimer.current);
      refreshTimer.current = null;
    };
  }, [conversationId, loadNewest]);

  const loadOlder = useCallback(async () => {
    if (!olderCursor || loadingOlder) return;
    setLoadingOlder(true);
    try {
      const page = await api<Page<Message>>('GET', `/v1/conversations/${conversationId}/messages?order=desc&limit=${PAGE}&cursor=${encodeURIComponent(olderCursor)}`);
      if (!alive.current) return;
      merge(page.data, false);
      setOlderCursor(page.next_cursor);
    } finally {
      if (alive.current) setLoadingOlder(false);
    }
  }, [conversationId, olderCursor, loadingOlder, merge]);

  /** Shows the reply at once, sends it, then follows its real status. */
  const send = useCallback(async (body: SendBody, previewUrl: string | null = null, retryOf?: LocalMessage) => {
    const key = retryOf?.local.idempotencyKey ?? crypto.randomUUID();
    const tempId = retryOf?.id ?? 'local_' + key;
    const local: LocalMessage = {
      id: tempId, conversation_id: conversationId, account_id: '', direction: 'outbound', type: body.type, text: body.text ?? null,
      media: previewUrl ? { url: previewUrl, kind: 'image' } : null, share_post: null, template: null, unsupported: null, referral: null,
      reply_to: body.reply_to ?? null, status: 'queued', source: 'inbox', error: null, provider_message_id: null, sent_by: null,
      created_at: new Date().toISOString(), updated_at: null,
      local: { state: 'sending', error: null, body, previewUrl, idempotencyKey: key },
    };
    setLocals((prev) => [...prev.filter((m) => m.id !== tempId), local]);
    try {
      const msg = await api<Message>('POST', '/v1/messages', body, { headers: { 'idempotency-key': key } });
      sentBodies.set(msg.id, body);
      if (previewUrl) previews.set(msg.id, previewUrl);
      if (!alive.current) return msg;
      // A local preview keeps showing the image until the server has its own copy.
      const row = previewUrl && !msg.media?.url ? { ...msg, media: { ...(msg.media ?? {}), url: previewUrl } } : msg;
      // The reply's events (or the refresh they start) may have brought it first, further along
      // (sending, sent) than this answer (queued): keep that.
      setById((p) => (p.has(row.id) ? p : new Map(p).set(row.id, row)));
      setLocals((prev) => prev.filter((m) => m.id !== tempId));
      conversations.refresh(conversationId, 0);
      return msg;
    } catch (err) {
      const apiErr = err instanceof ApiError ? err : new ApiError(0, 'network_error', String(err));
      // Refused (a policy error, a bad request): the reply goes back to the composer with the reason.
      // Not reached or not accepted for now (network, 5xx, 429): it stays here, marked, with a retry.
      const refused = apiErr.status >= 400 && apiErr.status < 500 && apiErr.status !== 429;
      if (alive.current) {
        setLocals((prev) => refused
          ? prev.filter((m) => m.id !== tempId)
          : prev.map((m) => (m.id === tempId ? { ...m, status: 'failed', local: { ...m.local, state: 'refused', error: apiErr } } : m)));
      }
      // A refusal means the window changed under us: show the server's view.
      if (apiErr.status === 422) conversations.refresh(conversationId, 0);
      throw apiErr;
    }
  }, [conversationId]);

  const discard = useCallback((tempId: string) => setLocals((prev) => prev.filter((m) => m.id !== tempId)), []);

  const messages: ThreadMessage[] = [...byId.values()].sort(order);
  return { messages, locals, state, error, hasOlder: olderCursor !== null, loadingOlder, loadOlder, send, discard, reload: loadNewest };
}
