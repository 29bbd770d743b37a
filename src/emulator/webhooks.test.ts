import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createEmulator, startEmulator } from './index.js';
import { api, connectBusiness, control, startSink, type Sink } from './test-harness.js';

const APP = 'app_hooks';
const SECRET = 'secret_hooks';

let sink: Sink;
let emu: Awaited<ReturnType<typeof startEmulator>>;

beforeAll(async () => {
  sink = await startSink();
  emu = await startEmulator({ appId: APP, appSecret: SECRET, webhookRetryDelaysMs: [30, 30, 30] });
});
afterAll(async () => { await emu.close(); await sink.close(); });

const register = (base: string, url: string) =>
  api(base, 'POST', 'business/webhook/update/', { body: { app_id: APP, secret: SECRET, event_type: 'DIRECT_MESSAGE', callback_url: url } });

beforeEach(async () => {
  await control(emu.url, 'POST', 'reset');
  sink.received.length = 0;
  sink.status = 200;
  await register(emu.url, sink.url);
  await control(emu.url, 'POST', 'businesses', { username: 'hook_shop' });
});

/** Independent verification, written from tiktok-api.md §3.4 rather than from the emulator's code. */
function verify(header: string, raw: string, secret: string): boolean {
  const parts = Object.fromEntries(header.split(',').map((p) => p.split('=') as [string, string]));
  const expected = createHmac('sha256', secret).update(`${parts['t']}.${raw}`).digest('hex');
  return typeof parts['s'] === 'string' && parts['s'].length === expected.length && timingSafeEqual(Buffer.from(parts['s']), Buffer.from(expected));
}

describe('signed pushes', () => {
  it('signs t.body with the app secret and wraps content as a JSON string', async () => {
    const before = Math.floor(Date.now() / 1000);
    const { message_id, conversation_id } = await control(emu.url, 'POST', 'dm', { from: 'sig_user', text: 'hello', business: 'hook_shop' });
    const r = await sink.waitFor((x) => x.content['message_id'] === message_id);
    const header = r.headers['tiktok-signature'] as string;
    expect(header).toMatch(/^t=\d+,s=[0-9a-f]{64}$/);
    expect(verify(header, r.raw, SECRET)).toBe(true);
    expect(verify(header, r.raw, 'wrong secret')).toBe(false);
    expect(Math.abs(Number(/t=(\d+)/.exec(header)![1]) - before)).toBeLessThanOrEqual(2);
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.headers['x-tt-logid']).toBeTruthy();

    const biz = await control(emu.url, 'POST', 'businesses', { username: 'hook_shop' });
    const cust = await control(emu.url, 'POST', 'customers', { username: 'sig_user' });
    expect(r.body).toMatchObject({ client_key: APP, event: 'im_receive_msg', user_openid: biz.open_id });
    expect(typeof r.body.content).toBe('string');
    expect(r.body.create_time).toBeLessThan(1e11); // seconds, not ms
    expect(r.content).toMatchObject({
      from: 'sig_user', to: 'hook_shop', unique_identifier: cust.unique_identifier,
      from_user: { id: cust.unique_identifier, role: 'personal_account' }, to_user: { id: biz.open_id, role: 'business_account' },
      conversation_id, message_id, type: 'text', text: { body: 'hello' }, is_follower: false, scene_type: 0,
    });
    expect(r.content['timestamp']).toBeGreaterThan(1e12); // ms
  });

  it('retries after a 500 until the callback answers 200', async () => {
    let n = 0;
    sink.status = () => (++n <= 2 ? 500 : 200);
    const { message_id } = await control(emu.url, 'POST', 'dm', { from: 'retry_user' });
    const r = await sink.waitFor((x) => x.content['message_id'] === message_id);
    expect(verify(r.headers['tiktok-signature'] as string, r.raw, SECRET)).toBe(true);
    // The sink records before it answers, so give the emulator a moment to count the 200.
    await expect.poll(async () => (await control(emu.url, 'GET', 'stats')).webhooks).toMatchObject({ delivered: 1, failed_attempts: 2, pending: 0 });
  });

  it('pushes referral and read events', async () => {
    await control(emu.url, 'POST', 'referral', { business: 'hook_shop', from: 'ad_user', source: 'ad', ad: { ad_id: '123', ad_name: 'Spring sale' } });
    const ref = await sink.waitFor((x) => x.body.event === 'im_referral_msg');
    expect(ref.content['message_id']).toBeUndefined();
    expect(ref.content['type']).toBeUndefined();
    const referral = ref.content['referral'] as { source: string; ad: Record<string, unknown> };
    expect(referral.source).toBe('ad');
    expect(referral.ad).toMatchObject({ ad_id: '123', ad_name: 'Spring sale' });
    expect(referral.ad['timestamp']).toBeGreaterThan(1e12);

    const { conversation_id } = await control(emu.url, 'POST', 'dm', { from: 'ad_user' });
    await control(emu.url, 'POST', 'read', { conversation_id, timestamp: 1_700_000_000_000 });
    const read = await sink.waitFor((x) => x.body.event === 'im_mark_read_msg');
    expect(read.content).toMatchObject({ conversation_id, read: { last_read_timestamp: 1_700_000_000_000 } });
  });

  it('registers, lists and deletes the callback with app_id + secret', async () => {
    const q = { app_id: APP, secret: SECRET, event_type: 'DIRECT_MESSAGE' };
    expect((await api(emu.url, 'GET', 'business/webhook/list/', { query: q })).data).toEqual({ app_id: APP, event_type: 'DIRECT_MESSAGE', callback_url: sink.url });
    expect((await api(emu.url, 'GET', 'business/webhook/list/', { query: { ...q, secret: 'bad' } })).code).toBe(40101);
    expect((await api(emu.url, 'POST', 'business/webhook/delete/', { body: q })).code).toBe(0);
    expect((await api(emu.url, 'GET', 'business/webhook/list/', { query: q })).data).toEqual({ app_id: APP, event_type: 'DIRECT_MESSAGE' });
    await control(emu.url, 'POST', 'dm', { from: 'nobody_listens' });
    expect((await control(emu.url, 'GET', 'stats')).webhooks.dropped).toBe(1);
  });
});

describe('mounting and persistence', () => {
  it('works under a prefix and puts the prefix into generated URLs', async () => {
    const emulator = createEmulator({ appId: APP, appSecret: SECRET });
    const app = Fastify();
    app.get('/healthz', async () => ({ ok: true }));
    await app.register(emulator.plugin, { prefix: '/sandbox/tiktok' });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as { port: number }).port;
    const base = `http://127.0.0.1:${port}/sandbox/tiktok`;
    try {
      await register(base, sink.url);
      const c = await connectBusiness(base, APP, SECRET, 'mounted_shop');
      const { conversation_id, message_id } = await control(base, 'POST', 'dm', { from: 'm_user', type: 'image' });
      const hook = await sink.waitFor((x) => x.content['message_id'] === message_id);
      const mediaId = (hook.content['image'] as { media_id: string }).media_id;
      const dl = await api(base, 'POST', 'business/message/media/download/', {
        token: c.accessToken, body: { business_id: c.openId, conversation_id, message_id, media_id: mediaId, media_type: 'IMAGE' },
      });
      const url = dl.data['download_url'] as string;
      expect(url.startsWith(`${base}/_media/`)).toBe(true);
      expect((await fetch(url, { headers: { 'x-user': c.accessToken } })).status).toBe(200);
      expect((await fetch(`${base}/open_api/v1.3/business/get`)).status).toBe(404);
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('keeps ids deterministic and state across restarts with statePath', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'emu-state-'));
    const statePath = join(dir, 'state.json');
    try {
      const a = await startEmulator({ appId: APP, appSecret: SECRET, statePath });
      const c = await connectBusiness(a.url, APP, SECRET, 'persist_shop');
      const { conversation_id } = await control(a.url, 'POST', 'dm', { business: 'persist_shop', from: 'p_user' });
      await a.close();

      const b = await startEmulator({ appId: APP, appSecret: SECRET, statePath });
      const ok = await api(b.url, 'GET', 'business/get/', { token: c.accessToken, query: { business_id: c.openId } });
      expect(ok.data).toMatchObject({ username: 'persist_shop' });
      const list = await api(b.url, 'GET', 'business/message/content/list/', { token: c.accessToken, query: { business_id: c.openId, conversation_id } });
      expect(list.data['messages']).toHaveLength(1);
      await b.close();

      // Without a state file the same (appId, username) still yields the same ids.
      const fresh = await startEmulator({ appId: APP, appSecret: SECRET });
      expect((await control(fresh.url, 'POST', 'businesses', { username: 'persist_shop' })).open_id).toBe(c.openId);
      const again = await control(fresh.url, 'POST', 'dm', { from: 'p_user' });
      expect(again.conversation_id).toBe(conversation_id);
      await fresh.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
