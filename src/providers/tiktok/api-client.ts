import { TiktokApiError, TiktokNetworkError } from './errors.js';
import { JsonTransport } from './json-transport.js';
import { parseTiktokJson } from './json.js';

const transport = new JsonTransport();

export interface TokenSet {
  accessToken: string;
  refreshToken: string;
  scopes: string[];
  expiresAtMs: number;
  refreshExpiresAtMs: number;
  /** Lifetimes as TikTok gave them (expires_in, refresh_token_expires_in): callers with their own clock add them to it. */
  expiresInMs: number;
  refreshExpiresInMs: number;
  openId: string;
}

/** The send endpoint (its errors carry it as `endpoint`: the sender tells a send's from an upload's by it). */
export const SEND_PATH = 'business/message/send/';

interface Envelope<T> { code: number; message: string; request_id?: string; data: T }

export interface TiktokClientOptions {
  apiBase: string; // ends with /
  appId: string;
  appSecret: string;
  timeoutMs?: number;
  clock?: () => number;
}

export interface RestConversation { conversation_id: string; update_time?: number; up_time?: number; referral?: unknown }
export interface RestParticipant { role: string; id: string; display_name?: string; profile_image?: string; is_follower?: boolean; username?: string }
export interface RestMessage {
  message_id: string; conversation_id?: string; sender?: string; recipient?: string; timestamp: number; message_type: string;
  text?: { body: string }; image?: { media_id: string }; share_post?: { item_id?: string; embed_url?: string };
  video?: { media_id: string }; sticker?: { url: string }; emoji?: { url: string }; template?: unknown;
  from_user?: RestParticipant; to_user?: RestParticipant; message_tag?: { source?: string };
  referenced_message_info?: { referenced_message_id?: string };
}

export interface SendBody {
  message_type: 'TEXT' | 'IMAGE' | 'SHARE_POST' | 'TEMPLATE';
  text?: { body: string };
  image?: { media_id: string };
  share_post?: { item_id: string };
  template?: unknown;
  referenced_message_info?: { referenced_message_id: string };
}

/**
 * TikTok Business API v1.3. Every path ends in `/`; the token travels in `Access-Token` (no
 * Bearer); errors come back as HTTP 200 with a non-zero `code`, thrown here as TiktokApiError.
 */
export class TiktokClient {
  private readonly base: string;
  constructor(private readonly opts: TiktokClientOptions) {
    this.base = opts.apiBase.endsWith('/') ? opts.apiBase : opts.apiBase + '/';
  }

  private get now(): number { return (this.opts.clock ?? Date.now)(); }

  async call<T>(method: 'GET' | 'POST', path: string, init: { token?: string; query?: Record<string, string>; json?: unknown; form?: FormData } = {}): Promise<T> {
    const url = new URL(path, this.base);
    // URLSearchParams encodes '+' as %2B, which conversation ids need (they contain + and =).
    for (const [k, v] of Object.entries(init.query ?? {})) url.searchParams.set(k, v);
    const headers: Record<string, string> = {};
    if (init.token) headers['Access-Token'] = init.token;
    const timeoutMs = this.opts.timeoutMs ?? 15000;
    let body: string | undefined;
    if (init.json !== undefined) { headers['content-type'] = 'application/json'; body = JSON.stringify(init.json); }
    let status: number;
    let text: string;
    try {
      if (body === undefined && init.form) {
        // Multipart uploads are rare (one per new image): fetch builds the body.
        const res = await fetch(url, { method, headers, body: init.form, signal: AbortSignal.timeout(timeoutMs), redirect: 'error' });
        status = res.status;
        text = await res.text();
      } else {
        ({ status, text } = await transport.request(url, method, headers, body, timeoutMs));
      }
    } catch (err) {
      // (fetch's uploads do not tell: an upload repeated only leaves TikTok an unused media id.)
      const written = (err as { requestWritten?: unknown } | null)?.requestWritten === true;
      throw new TiktokNetworkError(err instanceof Error ? err.message : String(err), path, written);
    }
    // A 429 is a refusal; a 5xx may come from a proxy that gave up on a request TikTok still ran.
    if (status >= 500) throw new TiktokNetworkError(`HTTP ${status}`, path, true);
    if (status === 429) throw new TiktokNetworkError(`HTTP ${status}`, path);
    if (status >= 300 && status < 400) throw new TiktokNetworkError(`HTTP ${status}: redirects are not followed`, path);
    let env: Envelope<T>;
    try { env = parseTiktokJson(text) as Envelope<T>; } catch { throw new TiktokNetworkError(`HTTP ${status}, not JSON`, path, true); }
    if (typeof env.code !== 'number') throw new TiktokNetworkError(`HTTP ${status}, no envelope`, path, true);
    if (env.code !== 0) throw new TiktokApiError(env.code, env.message ?? '', env.request_id ?? null, path);
    return env.data;
  }

  private toTokenSet(d: { access_token: string; refresh_token: string; scope: string; expires_in: number; refresh_token_expires_in: number; open_id: string }): TokenSet {
    const now = this.now;
    return {
      accessToken: d.access_token,
      refreshToken: d.refresh_token,
      scopes: String(d.scope ?? '').split(/[,\s]+/).filter(Boolean),
      expiresAtMs: now + Number(d.expires_in) * 1000,
      refreshExpiresAtMs: now + Number(d.refresh_token_expires_in) * 1000,
      expiresInMs: Number(d.expires_in) * 1000,
      refreshExpiresInMs: Number(d.refresh_token_expires_in) * 1000,
      openId: d.open_id,
    };
  }

  async exchangeCode(authCode: string, redirectUri: string): Promise<TokenSet> {
    const d = await this.call<Parameters<TiktokClient['toTokenSet']>[0]>('POST', 'tt_user/oauth2/token/', {
      json: { client_id: this.opts.appId, client_secret: this.opts.appSecret, grant_type: 'authorization_code', auth_code: authCode, redirect_uri: redirectUri },
    });
    return this.toTokenSet(d);
  }

  async refresh(refreshToken: string): Promise<TokenSet> {
    const d = await this.call<Parameters<TiktokClient['toTokenSet']>[0]>('POST', 'tt_user/oauth2/refresh_token/', {
      json: { client_id: this.opts.appId, client_secret: this.opts.appSecret, grant_type: 'refresh_token', refresh_token: refreshToken },
    });
    return this.toTokenSet(d);
  }

  async revoke(accessToken: string): Promise<void> {
    await this.call('POST', 'tt_user/oauth2/revoke/', { json: { client_id: this.opts.appId, client_secret: this.opts.appSecret, access_token: accessToken } });
  }

  /** What TikTok knows about an access token (no secret; `app_id` names the app). Throws 40102/40105 when it no longer works. */
  async tokenInfo(accessToken: string): Promise<{ appId: string; scopes: string[]; creatorId: string | null }> {
    const d = await this.call<{ app_id?: string; scope?: string; creator_id?: string }>('POST', 'tt_user/token_info/get/', {
      json: { app_id: this.opts.appId, access_token: accessToken },
    });
    return { appId: d.app_id ?? this.opts.appId, scopes: String(d.scope ?? '').split(/[,\s]+/).filter(Boolean), creatorId: d.creator_id ?? null };
  }

  async getBusiness(token: string, businessId: string): Promise<{ username?: string; display_name?: string; profile_image?: string; region?: string }> {
    return this.call('GET', 'business/get/', {
      token, query: { business_id: businessId, fields: JSON.stringify(['username', 'display_name', 'profile_image', 'region']) },
    });
  }

  async send(token: string, businessId: string, conversationId: string, body: SendBody): Promise<string> {
    const d = await this.call<{ message?: { message_id?: unknown } } | null>('POST', SEND_PATH, {
      token, json: { business_id: businessId, recipient_type: 'CONVERSATION', recipient: conversationId, ...body },
    });
    const id = d?.message?.message_id;
    // Accepted, but without the id that would tie the reply to TikTok's message: TikTok has it.
    if (typeof id !== 'string' || !id) throw new TiktokNetworkError('the send was accepted (code 0) without a message id', SEND_PATH, true);
    return id;
  }

  async uploadImage(token: string, businessId: string, bytes: Buffer, contentType: string): Promise<string> {
    const form = new FormData();
    form.set('business_id', businessId);
    form.set('media_type', 'IMAGE');
    form.set('file', new Blob([bytes], { type: contentType }), contentType === 'image/png' ? 'image.png' : 'image.jpg');
    const d = await this.call<{ media_id: string }>('POST', 'business/message/media/upload/', { token, form });
    return d.media_id;
  }

  async mediaDownloadUrl(token: string, businessId: string, conversationId: string, messageId: string, mediaId: string, kind: 'IMAGE' | 'VIDEO'): Promise<string> {
    const d = await this.call<{ download_url: string }>('POST', 'business/message/media/download/', {
      token, json: { business_id: businessId, conversation_id: conversationId, message_id: messageId, media_id: mediaId, media_type: kind },
    });
    return d.download_url;
  }

  /** Fetches a media download URL; TikTok wants the access token in `x-user`. */
  async fetchMedia(token: string, downloadUrl: string, maxBytes: number): Promise<{ bytes: Buffer; contentType: string }> {
    let res: Response;
    try {
      res = await fetch(downloadUrl, { headers: { 'x-user': token }, signal: AbortSignal.timeout(this.opts.timeoutMs ?? 15000) });
    } catch (err) {
      throw new TiktokNetworkError(err instanceof Error ? err.message : String(err), 'media download');
    }
    if (!res.ok) throw new TiktokNetworkError(`HTTP ${res.status}`, 'media download');
    const bytes = Buffer.from(await res.arrayBuffer());
    if (bytes.length > maxBytes) throw new TiktokNetworkError('media larger than allowed', 'media download');
    return { bytes, contentType: res.headers.get('content-type') ?? 'application/octet-stream' };
  }

  async canSendImages(token: string, businessId: string, conversationId: string, conversationType: 'STRANGER' | 'SINGLE'): Promise<boolean> {
    const d = await this.call<{ capability_infos: { capability_type: string; capability_result: boolean }[] }>('GET', 'business/message/capabilities/get/', {
      token, query: { business_id: businessId, conversation_id: conversationId, conversation_type: conversationType, capability_types: JSON.stringify(['IMAGE_SEND']) },
    });
    return Boolean(d.capability_infos?.find((c) => c.capability_type === 'IMAGE_SEND')?.capability_result);
  }

  async listConversations(token: string, businessId: string, type: 'STRANGER' | 'SINGLE', cursor = 0, limit = 100): Promise<{ conversations: RestConversation[]; has_more: boolean; cursor: number }> {
    return this.call('GET', 'business/message/conversation/list/', {
      token, query: { business_id: businessId, conversation_type: type, limit: String(limit), cursor: String(cursor) },
    });
  }

  async listMessages(token: string, businessId: string, conversationId: string): Promise<{ messages: RestMessage[]; participants: RestParticipant[] }> {
    return this.call('GET', 'business/message/content/list/', { token, query: { business_id: businessId, conversation_id: conversationId } });
  }

  async registerWebhook(callbackUrl: string): Promise<void> {
    await this.call('POST', 'business/webhook/update/', {
      json: { app_id: this.opts.appId, secret: this.opts.appSecret, event_type: 'DIRECT_MESSAGE', callback_url: callbackUrl },
    });
  }

  async webhookCallback(): Promise<string | null> {
    const d = await this.call<{ callback_url?: string }>('GET', 'business/webhook/list/', {
      query: { app_id: this.opts.appId, secret: this.opts.appSecret, event_type: 'DIRECT_MESSAGE' },
    });
    return d.callback_url ?? null;
  }
}
