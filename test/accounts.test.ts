import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, APP_ID, type TestGateway } from './helpers/gateway.js';
import { account, browse, refreshCalls, storedEvents, storedTokens, waitFor, type Hop } from './helpers/accounts.js';
import { closeContext, createContext, type AppContext } from '../src/context.js';
import { accessToken } from '../src/accounts/tokens.js';
import { startTokenKeeper } from '../src/accounts/token-keeper.js';
import { checkWebhookWiring } from '../src/accounts/health.js';
import { registerTiktokWebhook } from '../src/providers/tiktok/webhook-registration.js';
import { newId } from '../src/core/ids.js';

/**
 * TikTok Business accounts end to end, through the emulator: the OAuth redirects as a browser
 * follows them, reconnect, refresh (on use, concurrent, in the background), dead tokens, held
 * replies and webhooks, disconnect, eligibility, and that tokens never leave the store.
 */
describe('TikTok Business accounts', () => {
  let gw: TestGateway;
  const answers: string[] = []; // every API answer and page seen, to look for tokens in
  const tokens = new Set<string>(); // every token dmgate stored at some point
  const ids: Record<string, string> = {};

  const api = async (method: string, path: string, body?: unknown) => {
    const res = await gw.api(method, path, body);
    answers.push(typeof res.body === 'string' ? res.body : JSON.stringify(res.body));
    return res;
  };
  const noteTokens = async () => { for (const t of await storedTokens(gw)) tokens.add(t); };

  /** Connects (or reconnects) a business the way a person does: dmgate → consent page → click → callback. */
  const connectByBrowser = async (username: string, returnTo?: string): Promise<Hop[]> => {
    const hops = await browse(`${gw.url}/connect/tiktok${returnTo ? `?return_to=${encodeURIComponent(returnTo)}` : ''}`, {
      headers: { authorization: `Bearer ${gw.key}` }, authorizeAs: username,
    });
    answers.push(...hops.map((h) => h.body + (h.location ?? '')));
    await noteTokens();
    return hops;
  };
  const accountByUsername = async (username: string) => {
    const list = await api('GET', '/v1/accounts');
    return list.body.data.find((a: any) => a.username === username);
  };
  const customerWrites = async (business: string, from: string, text: string) => {
    const dm = await gw.control<{ message_id: string; conversation_id: string }>('dm', { business, from, text });
    return waitFor('the message to be stored', () => gw.server.ctx.database.db.selectFrom('messages').select(['id', 'conversation_id'])
      .where('provider_message_id', '=', dm.message_id).executeTakeFirst().then((m) => m && { ...m, provider_message_id: dm.message_id, external: dm.conversation_id }));
  };
  const messageStatus = async (id: string) => (await api('GET', `/v1/messages/${id}`)).body;

  beforeAll(async () => {
    gw = await startTestGateway();
    for (const b of ['shop_a', 'shop_b']) await gw.control('businesses', { username: b });
  });
  afterAll(async () => { await gw?.close(); });

  it('connects two businesses through the real redirect flow', async () => {
    const a = await connectByBrowser('shop_a');
    expect(a.map((h) => h.status)).toEqual([302, 200, 302, 200]);
    expect(new URL(a[0].location!).pathname).toBe('/v2/auth/authorize');
    const authorize = new URL(a[0].location!);
    expect(Object.fromEntries(authorize.searchParams)).toMatchObject({ client_key: APP_ID, response_type: 'code', redirect_uri: `${gw.url}/connect/tiktok/callback` });
    expect(authorize.searchParams.get('scope')!.split(',')).toEqual(expect.arrayContaining(['message.list.read', 'message.list.send', 'message.list.manage']));
    expect(authorize.searchParams.get('state')!.length).toBeGreaterThanOrEqual(32);
    expect(a[3].contentType).toContain('text/html');
    expect(a[3].body).toContain('Connected @shop_a');

    const b = await connectByBrowser('shop_b', '/settings/accounts');
    const back = b.find((h) => h.url.includes('/connect/tiktok/callback'))!;
    expect(back.status).toBe(302);
    expect(back.location).toMatch(/^\/settings\/accounts\?connected=acct_/);

    const list = await api('GET', '/v1/accounts');
    expect(list.body.data).toHaveLength(2);
    for (const username of ['shop_a', 'shop_b']) {
      const acct = await accountByUsername(username);
      ids[username] = acct.id;
      expect(acct).toMatchObject({ provider: 'tiktok', status: 'active', status_reason: null, username });
      expect(acct.id).toMatch(/^acct_/);
      expect(acct.scopes).toEqual(expect.arrayContaining(['message.list.read', 'message.list.send', 'message.list.manage']));
      expect(Date.parse(acct.token_expires_at) - Date.now()).toBeGreaterThan(23 * 3600 * 1000);
      expect(Date.parse(acct.refresh_token_expires_at) - Date.now()).toBeGreaterThan(300 * 86400 * 1000);
    }
    expect(a.at(-1)!.body).not.toContain('act.');
    const connected = await storedEvents(gw, 'account.connected');
    expect(connected.map((e) => e.account_id).sort()).toEqual([ids.shop_a, ids.shop_b].sort());
  });

  it('refuses a replayed callback, a forged state, and ends TikTok refusals on a page naming the fix', async () => {
    const hops = await browse(`${gw.url}/connect/tiktok`, { headers: { authorization: `Bearer ${gw.key}` } });
    const consent = new URL(hops[0].location!);
    consent.searchParams.set('login_as', 'shop_b');
    const approved = await fetch(consent, { redirect: 'manual' });
    const callback = approved.headers.get('location')!;
    const first = await fetch(callback, { headers: { accept: 'application/json' } });
    expect(first.status).toBe(200);
    const replay = await fetch(callback, { headers: { accept: 'application/json' } });
    expect(replay.status).toBe(400);
    const body = await replay.json() as any;
    expect(body.error.code).toBe('invalid_request');
    expect(body.error.message).toMatch(/already used or has expired/);
    const replayPage = await fetch(callback);
    expect(replayPage.status).toBe(400);
    expect(await replayPage.text()).toContain('Start the connection again');

    const forged = new URL(callback);
    forged.searchParams.set('state', 'not-a-state-we-issued');
    expect((await fetch(forged, { headers: { accept: 'application/json' } })).status).toBe(400);

    const cancelled = await browse(`${gw.url}/connect/tiktok`, { headers: { authorization: `Bearer ${gw.key}` }, cancel: true });
    expect(cancelled.at(-1)!.status).toBe(403);
    expect(cancelled.at(-1)!.body).toContain('approve the requested permissions');

    const config = await gw.control<{ app_scopes: string[] }>('config');
    await gw.control('config', { app_scopes: config.app_scopes.filter((s) => s !== 'message.list.manage') });
    try {
      const noScope = await browse(`${gw.url}/connect/tiktok`, { headers: { authorization: `Bearer ${gw.key}` }, authorizeAs: 'shop_a' });
      expect(noScope.at(-1)!.status).toBe(403);
      expect(noScope.at(-1)!.body).toMatch(/invalid_scope/);
      expect(noScope.at(-1)!.body).toMatch(/Business Messaging/);
    } finally {
      await gw.control('config', { app_scopes: config.app_scopes });
    }
    // Connecting needs an admin: no key, no redirect.
    expect((await fetch(`${gw.url}/connect/tiktok`, { redirect: 'manual' })).status).toBe(401);
    expect((await api('GET', '/v1/accounts')).body.data).toHaveLength(2);
  });

  it('reconnecting the same business keeps one account with the same id', async () => {
    await customerWrites('shop_b', 'bella', 'hello before the reconnect');
    const before = await account(gw, ids.shop_b);
    const hops = await connectByBrowser('shop_b');
    expect(hops.at(-1)!.body).toContain('Reconnected @shop_b');
    const list = await api('GET', '/v1/accounts');
    expect(list.body.data).toHaveLength(2);
    const after = await account(gw, ids.shop_b);
    expect(after.id).toBe(before.id);
    expect(after.created_at).toBe(before.created_at);
    expect(after.status).toBe('active');
    const convs = await api('GET', `/v1/conversations?account_id=${ids.shop_b}`);
    expect(convs.body.data.length).toBeGreaterThanOrEqual(1); // history intact
    const reconnected = (await storedEvents(gw, 'account.connected')).filter((e) => e.account_id === ids.shop_b);
    expect(reconnected.at(-1)!.reconnected).toBe(true);
  });

  it('refreshes an access token TikTok expired, without a failed reply', async () => {
    const conv = await customerWrites('shop_a', 'erin', 'is it in stock?');
    const before = await refreshCalls(gw, 'shop_a');
    await gw.control('tokens/expire', { business: 'shop_a' });
    const res = await api('POST', '/v1/messages', { conversation_id: conv.conversation_id, type: 'text', text: 'yes it is' });
    expect(res.status).toBe(202);
    await waitFor('the reply to be sent', async () => (await messageStatus(res.body.id)).status === 'sent');
    expect(await refreshCalls(gw, 'shop_a')).toBe(before + 1);
    const statuses = (await storedEvents(gw, 'message.status')).filter((e) => e.message_id === res.body.id).map((e) => e.status);
    expect(statuses).not.toContain('failed');
    expect(statuses).not.toContain('held');
    await noteTokens();
    const health = await api('GET', `/v1/accounts/${ids.shop_a}/health`);
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ status: 'active', healthy: true, fix: null, tiktok: { ok: true, missing_scopes: [] }, webhook: { ok: true } });
    expect(health.body.token.expires_in_s).toBeGreaterThan(3600);
  });

  it('two workers refreshing at once make exactly one refresh call', async () => {
    const ctx1 = gw.server.ctx;
    const ctx2: AppContext = await createContext(ctx1.config, { migrate: false, logDestination: gw.logs });
    try {
      const current = await accessToken(ctx1, ids.shop_a);
      const before = await refreshCalls(gw, 'shop_a');
      // Ten callers in two processes all saw TikTok reject the same token.
      const got = await Promise.all([ctx1, ctx2, ctx1, ctx2, ctx1, ctx2, ctx1, ctx2, ctx1, ctx2].map((c) => accessToken(c, ids.shop_a, { rejected: current })));
      expect(new Set(got).size).toBe(1);
      expect(got[0]).not.toBe(current);
      expect(await refreshCalls(gw, 'shop_a')).toBe(before + 1);

      // Two token keepers (two worker processes) find the token due at the same moment.
      await ctx1.database.db.updateTable('accounts').set({ token_expires_at: ctx1.clock() + 1000 }).where('id', '=', ids.shop_a).execute();
      const k1 = startTokenKeeper(ctx1);
      const k2 = startTokenKeeper(ctx2);
      try {
        await Promise.all([k1.runOnce(), k2.runOnce()]);
        ctx1.bus.notify('accounts'); // the gateway's own keeper too (on PostgreSQL it may hold the keeper lease)
        await waitFor('the keeper refresh', async () => (await refreshCalls(gw, 'shop_a')) === before + 2);
        await new Promise((r) => setTimeout(r, 300));
        expect(await refreshCalls(gw, 'shop_a')).toBe(before + 2);
      } finally {
        await k1.stop();
        await k2.stop();
      }
      expect(Date.parse((await account(gw, ids.shop_a)).token_expires_at) - Date.now()).toBeGreaterThan(23 * 3600 * 1000);
      await noteTokens();
    } finally {
      await closeContext(ctx2);
    }
  });

  it('a dead refresh token gives needs_reauth at once, with its event and the fix', async () => {
    await gw.control('businesses', { username: 'shop_c' });
    await connectByBrowser('shop_c');
    const id = (await accountByUsername('shop_c')).id;
    const conv = await customerWrites('shop_c', 'cleo', 'hello');
    await gw.control('tokens/revoke', { business: 'shop_c' });
    // The token is due: the keeper refreshes, TikTok refuses the refresh token (40103).
    await gw.server.ctx.database.db.updateTable('accounts').set({ token_expires_at: gw.server.ctx.clock() - 1 }).where('id', '=', id).execute();
    gw.server.ctx.bus.notify('accounts');
    const acct = await waitFor('needs_reauth', async () => { const a = await account(gw, id); return a.status === 'needs_reauth' && a; });
    expect(acct.status_reason).toMatch(/40103/);
    expect(acct.status_reason).toMatch(/reconnect/i);
    expect(acct.status_reason).toContain('/connect/tiktok');
    const [evt] = (await storedEvents(gw, 'account.needs_reauth')).filter((e) => e.account_id === id);
    expect(evt).toMatchObject({ event: 'account.needs_reauth', provider: 'tiktok', account_id: id, reason: acct.status_reason });
    expect(gw.logs.lines.some((l) => l.includes('"level":50') && l.includes(id) && l.includes('needs_reauth'))).toBe(true);
    // Replies are refused before TikTok is called, with the fix.
    const res = await api('POST', '/v1/messages', { conversation_id: conv.conversation_id, type: 'text', text: 'hi' });
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe('account_needs_reauth');
    // DMs still arrive while it waits for a reconnect.
    const later = await customerWrites('shop_c', 'cleo', 'anyone there?');
    expect(later.conversation_id).toBe(conv.conversation_id);
    const health = await api('GET', `/v1/accounts/${id}/health`);
    expect(health.body).toMatchObject({ status: 'needs_reauth', healthy: false, fix: acct.status_reason, tiktok: { ok: null } });
  });

  it('holds replies of an account whose authorization died, and sends them after the reconnect (window still open)', async () => {
    await gw.control('businesses', { username: 'shop_d' });
    await connectByBrowser('shop_d');
    const id = (await accountByUsername('shop_d')).id;
    const open = await customerWrites('shop_d', 'dina', 'can you help?');
    const closed = await customerWrites('shop_d', 'dario', 'old question');
    await gw.control('tokens/revoke', { business: 'shop_d' });
    const reply = await api('POST', '/v1/messages', { conversation_id: open.conversation_id, type: 'text', text: 'sure, here is how' });
    expect(reply.status).toBe(202);
    await waitFor('the reply to be held', async () => (await messageStatus(reply.body.id)).status === 'held');
    expect((await account(gw, id)).status).toBe('needs_reauth');
    expect((await storedEvents(gw, 'account.needs_reauth')).some((e) => e.account_id === id)).toBe(true);

    // A reply held for so long that its conversation's window closed.
    const db = gw.server.ctx.database.db;
    const longAgo = Date.now() - 50 * 3600 * 1000;
    await db.updateTable('conversations').set({ last_inbound_at: longAgo, outbound_since_inbound: 1 }).where('id', '=', closed.conversation_id).execute();
    const stale = newId('msg');
    await db.insertInto('messages').values({
      id: stale, conversation_id: closed.conversation_id, account_id: id, direction: 'outbound', provider_message_id: null, type: 'text', text: 'too late',
      media: null, extra: null, source: 'api', status: 'held', error: null, idempotency_key: null, request_hash: null, reply_to: null, sent_by: null,
      attempts: 0, next_attempt_at: null, counted_in_window: 1, provider_timestamp: null, created_at: longAgo, updated_at: longAgo,
    }).execute();

    await connectByBrowser('shop_d');
    expect((await account(gw, id)).status).toBe('active');
    await waitFor('the held reply to be sent', async () => (await messageStatus(reply.body.id)).status === 'sent');
    const sent = (await (await fetch(`${gw.emulatorUrl}/_control/sent?conversation_id=${encodeURIComponent(open.external)}`)).json() as any).data;
    expect(sent.map((s: any) => s.text?.body ?? s.text)).toContain('sure, here is how');
    const failed = await waitFor('the stale reply to fail', async () => { const m = await messageStatus(stale); return m.status === 'failed' && m; });
    expect(failed.error.code).toBe('window_closed');
    const conv = await db.selectFrom('conversations').select('outbound_since_inbound').where('id', '=', closed.conversation_id).executeTakeFirstOrThrow();
    expect(conv.outbound_since_inbound).toBe(1); // nothing given back
    const statuses = (await storedEvents(gw, 'message.status')).filter((e) => e.message_id === stale).map((e) => [e.status, e.error?.code ?? null]);
    expect(statuses).toEqual([['failed', 'window_closed']]);
    await noteTokens();
  });

  it('disconnect revokes at TikTok, keeps the data readable, holds webhooks until the reconnect', async () => {
    const first = await customerWrites('shop_a', 'dora', 'first message');
    const [oldToken] = [await accessToken(gw.server.ctx, ids.shop_a)];
    await noteTokens();
    const res = await api('DELETE', `/v1/accounts/${ids.shop_a}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: ids.shop_a, status: 'disconnected', token_expires_at: null });
    const row = await gw.server.ctx.database.db.selectFrom('accounts').selectAll().where('id', '=', ids.shop_a).executeTakeFirstOrThrow();
    expect(row.access_token_enc).toBeNull();
    expect(row.refresh_token_enc).toBeNull();
    expect((await storedEvents(gw, 'account.disconnected')).some((e) => e.account_id === ids.shop_a)).toBe(true);
    const info = await fetch(`${gw.emulatorUrl}/open_api/v1.3/tt_user/token_info/get/`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ app_id: APP_ID, access_token: oldToken }),
    });
    expect(((await info.json()) as any).code).toBe(40105); // revoked at TikTok

    // Conversations, messages and contacts stay readable.
    const convs = await api('GET', `/v1/conversations?account_id=${ids.shop_a}`);
    expect(convs.body.data.map((c: any) => c.id)).toContain(first.conversation_id);
    const msgs = await api('GET', `/v1/conversations/${first.conversation_id}/messages`);
    expect(msgs.body.data.map((m: any) => m.id)).toContain(first.id);
    const contacts = await api('GET', '/v1/contacts');
    expect(contacts.body.data.map((c: any) => c.username)).toContain('dora');

    // Its webhooks are acknowledged and stored, not delivered.
    const dm = await gw.control<{ message_id: string }>('dm', { business: 'shop_a', from: 'dora', text: 'while you were away' });
    await gw.drain();
    const inbound = await waitFor('the held webhook', () => gw.server.ctx.database.db.selectFrom('inbound_events').select(['seq', 'status'])
      .where('body', 'like', `%${dm.message_id}%`).where('status', '=', 'held').executeTakeFirst());
    expect((await gw.control<any>('stats')).webhooks.given_up).toBe(0);
    expect((await storedEvents(gw, 'message.received')).some((e) => e.provider_message_id === dm.message_id)).toBe(false);
    const refused = await api('POST', '/v1/messages', { conversation_id: first.conversation_id, type: 'text', text: 'hello?' });
    expect(refused.status).toBe(422);
    expect(refused.body.error.code).toBe('account_disconnected');
    expect((await api('POST', `/v1/accounts/${ids.shop_a}/backfill`)).status).toBe(422);

    // Reconnecting brings the same account back and processes what was kept.
    await connectByBrowser('shop_a');
    expect((await account(gw, ids.shop_a)).status).toBe('active');
    const received = await waitFor('the held DM to be delivered', async () => (await storedEvents(gw, 'message.received')).find((e) => e.provider_message_id === dm.message_id));
    expect(received).toMatchObject({ account_id: ids.shop_a, conversation_id: first.conversation_id, text: 'while you were away' });
    const processed = await gw.server.ctx.database.db.selectFrom('inbound_events').select('status').where('seq', '=', inbound.seq).executeTakeFirstOrThrow();
    expect(processed.status).toBe('processed');
    expect((await api('GET', '/v1/accounts')).body.data).toHaveLength(4);
  });

  it('reports a restricted region, and an account without Advanced Access, with the fix', async () => {
    await gw.control('businesses', { username: 'berlin_shop', region: 'DE' });
    const hops = await connectByBrowser('berlin_shop');
    expect(hops.at(-1)!.status).toBe(200);
    expect(hops.at(-1)!.body).toContain('Restricted');
    const de = await accountByUsername('berlin_shop');
    expect(de).toMatchObject({ status: 'restricted', region: 'DE' });
    expect(de.status_reason).toContain('DE');
    expect(de.status_reason).toMatch(/Advanced Access/);
    expect(de.status_reason).toMatch(/TikTok for Business/);
    const backfill = await api('POST', `/v1/accounts/${de.id}/backfill`);
    expect(backfill.status).toBe(422);
    expect(backfill.body.error.code).toBe('account_restricted');

    await gw.control('businesses', { username: 'quiet_shop' });
    await gw.control('faults', { endpoint: 'business/get/', code: 40118, times: 1 });
    await connectByBrowser('quiet_shop');
    const quiet = (await api('GET', '/v1/accounts?status=restricted')).body.data;
    expect(quiet).toHaveLength(2);
    const noAccess = quiet.find((a: any) => a.id !== de.id);
    expect(noAccess.status_reason).toMatch(/40118/);
    expect(noAccess.status_reason).toMatch(/Advanced Access/);
    expect(noAccess.status_reason).toMatch(/TikTok for Business/);
  });

  it('warns at start when TikTok delivers DMs elsewhere, and shows it in health', async () => {
    const ctx = gw.server.ctx;
    expect((await checkWebhookWiring(ctx)).ok).toBe(true);
    await registerTiktokWebhook(ctx.config, 'https://elsewhere.example.com/hooks/tiktok');
    try {
      const w = await checkWebhookWiring(ctx);
      expect(w).toMatchObject({ ok: false, callback_url: 'https://elsewhere.example.com/hooks/tiktok', expected: `${ctx.config.publicUrl}/webhooks/tiktok` });
      const line = gw.logs.lines.find((l) => l.includes('elsewhere.example.com') && l.includes('"level":40'));
      expect(line).toContain('dmgate tiktok register-webhook');
      const health = await api('GET', `/v1/accounts/${ids.shop_b}/health`);
      expect(health.body).toMatchObject({ healthy: false, webhook: { ok: false } });
      expect(health.body.fix).toMatch(/register-webhook/);
    } finally {
      await registerTiktokWebhook(ctx.config, `${gw.url}/webhooks/tiktok`);
    }
  });

  it('tokens appear in no API answer, event and log line', async () => {
    await noteTokens();
    for (const id of Object.values(ids)) {
      await api('GET', `/v1/accounts/${id}`);
      await api('GET', `/v1/accounts/${id}/health`);
    }
    await api('GET', '/v1/accounts');
    await api('GET', '/v1/events?limit=200');
    const events = (await storedEvents(gw)).map((e) => JSON.stringify(e));
    expect(tokens.size).toBeGreaterThanOrEqual(10);
    const haystacks = { answers: answers.join('\n'), events: events.join('\n'), logs: gw.logs.text };
    expect(gw.logs.lines.length).toBeGreaterThan(20);
    for (const token of tokens) {
      for (const [where, text] of Object.entries(haystacks)) {
        if (text.includes(token)) throw new Error(`a token appears in ${where}`);
      }
    }
  });
});
