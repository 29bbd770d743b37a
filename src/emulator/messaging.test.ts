import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startEmulator } from './index.js';
import { api, connectBusiness, control, startSink, type Connected, type Sink } from './test-harness.js';

const APP = 'app_msg';
const SECRET = 'secret_msg';
const H = 3_600_000;
const T0 = Date.UTC(2025, 2, 3, 0, 30);

let now = T0;
let emu: Awaited<ReturnType<typeof startEmulator>>;
let sink: Sink;
let biz: Connected;

beforeAll(async () => {
  sink = await startSink();
  emu = await startEmulator({ appId: APP, appSecret: SECRET, clock: () => now, webhookRetryDelaysMs: [20, 20], accessTokenTtlS: 30 * 86_400 });
});
afterAll(async () => { await emu.close(); await sink.close(); });

beforeEach(async () => {
  now = T0;
  await control(emu.url, 'POST', 'reset');
  sink.received.length = 0;
  sink.status = 200;
  await api(emu.url, 'POST', 'business/webhook/update/', { body: { app_id: APP, secret: SECRET, event_type: 'DIRECT_MESSAGE', callback_url: sink.url } });
  biz = await connectBusiness(emu.url, APP, SECRET, 'acme_shop');
  // Tests fire calls back to back; only the QPS test wants the real limit.
  await control(emu.url, 'POST', 'config', { qps: 1000 });
});

const dm = (from: string, extra: Record<string, unknown> = {}) =>
  control<{ message_id: string; conversation_id: string }>(emu.url, 'POST', 'dm', { from, text: `hi from ${from}`, ...extra });

const send = (conversationId: string, extra: Record<string, unknown> = {}) => api(emu.url, 'POST', 'business/message/send/', {
  token: biz.accessToken,
  body: { business_id: biz.openId, recipient_type: 'CONVERSATION', recipient: conversationId, message_type: 'TEXT', text: { body: 'hello' }, ...extra },
});

const stats = () => control(emu.url, 'GET', 'stats');

describe('48 h window and quota (seed 001 timeline)', () => {
  it('follows H1…H108', async () => {
    const at = (h: number) => { now = T0 + h * H; };
    at(1);
    const { conversation_id: cv } = await dm('alice');
    at(2);
    for (let i = 0; i < 3; i++) expect((await send(cv)).code).toBe(0);
    at(4);
    expect((await send(cv)).code).toBe(0);
    let conv = (await control(emu.url, 'GET', `conversations?conversation_id=${encodeURIComponent(cv)}`)).data[0];
    expect(conv.quota_remaining).toBe(6);
    at(7); await dm('alice');
    at(8); await dm('alice');
    conv = (await control(emu.url, 'GET', `conversations?conversation_id=${encodeURIComponent(cv)}`)).data[0];
    expect(conv.quota_remaining).toBe(10);
    at(10); expect((await send(cv)).code).toBe(0);
    at(39); expect((await send(cv)).code).toBe(0);
    at(56);
    const expired = await send(cv);
    expect(expired).toMatchObject({ code: 40064, data: {} });
    at(60); await dm('alice');
    for (let i = 0; i < 10; i++) { at(60 + i); expect((await send(cv)).code).toBe(0); }
    const overQuota = await send(cv);
    expect(overQuota.code).toBe(40064);
    const v = (await stats()).violations;
    expect(v).toEqual({ qps: 0, window: 1, quota: 1, daily_cap: 0, content: 0 });
  });

  it('refuses a business-initiated conversation (referral only, no message)', async () => {
    const { conversation_id } = await control(emu.url, 'POST', 'referral', { business: 'acme_shop', from: 'bob', source: 'short_link' });
    expect((await send(conversation_id)).code).toBe(40064);
    expect((await stats()).violations.window).toBe(1);
  });

  it('sender actions need the window but use no quota; app replies use quota', async () => {
    await control(emu.url, 'POST', 'config', { window_quota: 2 });
    const { conversation_id: cv } = await dm('carol');
    const typing = await send(cv, { message_type: 'SENDER_ACTION', sender_action: 'TYPING', text: undefined });
    expect(typing).toMatchObject({ code: 0, data: { message: { message_id: '' } } });
    const app = await control(emu.url, 'POST', 'app-reply', { conversation_id: cv, text: 'typed in the app' });
    const echo = await sink.waitFor((r) => r.body.event === 'im_send_msg' && r.content['message_id'] === app.message_id);
    expect(echo.content['message_tag']).toEqual({ source: 'APP' });
    expect((await send(cv)).code).toBe(0);
    expect((await send(cv)).code).toBe(40064); // 2 = app reply + API send
  });
});

describe('daily cap and QPS', () => {
  it('caps distinct conversations replied to per UTC day', async () => {
    await control(emu.url, 'POST', 'config', { daily_cap: 2 });
    const a = await dm('d1'); const b = await dm('d2'); const c = await dm('d3');
    expect((await send(a.conversation_id)).code).toBe(0);
    expect((await send(b.conversation_id)).code).toBe(0);
    const capped = await send(c.conversation_id);
    expect(capped).toMatchObject({ code: 40064, message: 'You are sending messages too fast. Take a rest.' });
    expect((await send(a.conversation_id)).code).toBe(0); // already counted today
    expect((await stats()).violations.daily_cap).toBe(1);
    now = Date.UTC(2025, 2, 4, 0, 0, 1); // next UTC day, still inside c's window
    expect((await send(c.conversation_id)).code).toBe(0);
  });

  it('answers 40100 beyond the per-business QPS across business/message/* endpoints', async () => {
    await control(emu.url, 'POST', 'config', { qps: 3 });
    const { conversation_id: cv } = await dm('q1');
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => i % 2
      ? send(cv)
      : api(emu.url, 'GET', 'business/message/content/list/', { token: biz.accessToken, query: { business_id: biz.openId, conversation_id: cv } })));
    const throttled = results.filter((r) => r.code === 40100).length;
    expect(throttled).toBe(3);
    expect((await stats()).violations.qps).toBe(3);
  });
});

describe('content rules', () => {
  it('counts each refusal as a content violation', async () => {
    const { conversation_id: cv } = await dm('e1');
    expect((await send(cv, { text: { body: '😀'.repeat(6000) } })).code).toBe(0); // 6000 code points is fine
    expect((await send(cv, { text: { body: '😀'.repeat(6001) } })).code).toBe(40002);
    expect((await send(cv, { image: { media_id: 'x' } })).code).toBe(40002); // text + image
    expect((await send(cv, { message_type: 'IMAGE', text: undefined, image: { media_id: 'nope' } })).code).toBe(40002);
    const tpl = (over: Record<string, unknown>) => send(cv, {
      message_type: 'TEMPLATE', text: undefined,
      template: { type: 'QA_BUTTON_CARD', title: 'Pick one', buttons: [{ type: 'REPLY', title: 'Yes', id: 'y' }], ...over },
    });
    expect((await tpl({})).code).toBe(0);
    expect((await tpl({ title: 'x'.repeat(41) })).code).toBe(40002);
    expect((await tpl({ buttons: [] })).code).toBe(40002);
    expect((await tpl({ buttons: [1, 2, 3, 4].map((i) => ({ type: 'REPLY', title: `b${i}`, id: `${i}` })) })).code).toBe(40002);
    expect((await tpl({ buttons: [{ type: 'REPLY', title: 'x'.repeat(21), id: 'y' }] })).code).toBe(40002);
    expect((await tpl({ buttons: [{ type: 'REPLY', title: 'ok', id: 'i'.repeat(41) }] })).code).toBe(40002);
    expect((await stats()).violations.content).toBe(8);
  });

  it('refuses images where either region blocks them, and says so in capabilities/get', async () => {
    const us = await dm('usa_user', {});
    await control(emu.url, 'POST', 'customers', { username: 'usa_user', region: 'US' });
    const sg = await dm('sg_user');
    const cap = (cv: string) => api(emu.url, 'GET', 'business/message/capabilities/get/', {
      token: biz.accessToken, query: { business_id: biz.openId, conversation_id: cv, conversation_type: 'STRANGER', capability_types: '["IMAGE_SEND"]' },
    });
    expect((await cap(sg.conversation_id)).data).toEqual({ capability_infos: [{ capability_type: 'IMAGE_SEND', capability_result: true }] });
    expect((await cap(us.conversation_id)).data['capability_infos'][0].capability_result).toBe(false);

    const mediaId = await upload(pngBytes());
    const img = { message_type: 'IMAGE', text: undefined, image: { media_id: mediaId } };
    expect((await send(sg.conversation_id, img)).code).toBe(0);
    expect((await send(us.conversation_id, img)).code).toBe(40001);
  });
});

function pngBytes(): Buffer {
  return Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');
}

async function uploadRaw(bytes: Buffer, filename = 'a.png') {
  const form = new FormData();
  form.append('business_id', biz.openId);
  form.append('media_type', 'IMAGE');
  form.append('file', new Blob([bytes]), filename);
  const res = await fetch(`${emu.url}/open_api/v1.3/business/message/media/upload/`, { method: 'POST', headers: { 'Access-Token': biz.accessToken }, body: form });
  return (await res.json()) as { code: number; data: Record<string, string> };
}
async function upload(bytes: Buffer): Promise<string> {
  const r = await uploadRaw(bytes);
  expect(r.code).toBe(0);
  return r.data['media_id']!;
}

describe('media', () => {
  it('checks uploads by magic bytes and size', async () => {
    expect((await uploadRaw(pngBytes(), 'photo.gif')).code).toBe(0);
    expect((await uploadRaw(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]), 'x.bin')).code).toBe(0);
    expect((await uploadRaw(Buffer.from('GIF89a....'), 'fake.png')).code).toBe(40908);
    expect((await uploadRaw(Buffer.alloc(0))).code).toBe(40906);
    const big = Buffer.concat([pngBytes(), Buffer.alloc(3 * 1024 * 1024)]);
    expect((await uploadRaw(big)).code).toBe(40907);
    expect((await stats()).violations.content).toBe(3);
  });

  it('serves a customer image through download_url only with x-user', async () => {
    const { conversation_id: cv, message_id } = await dm('pic_sender', { type: 'image' });
    const hook = await sink.waitFor((r) => r.content['message_id'] === message_id);
    const mediaId = (hook.content['image'] as { media_id: string }).media_id;
    const dl = await api(emu.url, 'POST', 'business/message/media/download/', {
      token: biz.accessToken, body: { business_id: biz.openId, conversation_id: cv, message_id, media_id: mediaId, media_type: 'IMAGE' },
    });
    expect(dl.code).toBe(0);
    const url = dl.data['download_url'] as string;
    expect(url.startsWith(`${emu.url}/_media/`)).toBe(true);
    expect(url).toContain('x-expires=');
    expect((await fetch(url)).status).toBe(403);
    const ok = await fetch(url, { headers: { 'x-user': biz.accessToken } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await ok.arrayBuffer()).subarray(1, 4).toString()).toBe('PNG');
  });

  it('answers 40007 for a media_id past its 30 days', async () => {
    const { conversation_id: cv, message_id } = await dm('old_pic', { type: 'image' });
    const hook = await sink.waitFor((r) => r.content['message_id'] === message_id);
    const mediaId = (hook.content['image'] as { media_id: string }).media_id;
    const download = (token: string) => api(emu.url, 'POST', 'business/message/media/download/', {
      token, body: { business_id: biz.openId, conversation_id: cv, message_id, media_id: mediaId, media_type: 'IMAGE' },
    });
    now = T0 + 29 * 24 * H;
    const later = await connectBusiness(emu.url, APP, SECRET, 'acme_shop'); // a token that outlives the media
    expect((await download(later.accessToken)).code).toBe(0);
    now = T0 + 30 * 24 * H;
    expect((await download(later.accessToken)).code).toBe(40007);
  });
});

describe('echoes, sent log, lists', () => {
  it('echoes API sends as im_send_msg (source API) and logs them', async () => {
    const { conversation_id: cv } = await dm('f1');
    const r = await send(cv, { text: { body: 'thanks!' } });
    const id = r.data['message']['message_id'];
    const echo = await sink.waitFor((x) => x.body.event === 'im_send_msg' && x.content['message_id'] === id);
    expect(echo.content).toMatchObject({
      from: 'acme_shop', to: 'f1', from_user: { id: biz.openId, role: 'business_account' }, conversation_id: cv,
      type: 'text', text: { body: 'thanks!' }, message_tag: { source: 'API' },
    });
    const sent = await control(emu.url, 'GET', `sent?conversation_id=${encodeURIComponent(cv)}`);
    expect(sent.data).toHaveLength(1);
    expect(sent.data[0]).toMatchObject({ message_id: id, conversation_id: cv, business_id: biz.openId, business_username: 'acme_shop', message_type: 'TEXT', text: { body: 'thanks!' } });
    expect((await stats()).sent).toBe(1);
  });

  it('with echo_before_response the echo is delivered before send answers', async () => {
    await control(emu.url, 'POST', 'config', { echo_before_response: true });
    const { conversation_id: cv } = await dm('f2');
    const r = await send(cv);
    const id = r.data['message']['message_id'];
    expect(sink.received.some((x) => x.body.event === 'im_send_msg' && x.content['message_id'] === id)).toBe(true);
  });

  it('with send_delay_ms send answers late, the message already recorded (a call still in flight at TikTok)', async () => {
    await control(emu.url, 'POST', 'config', { send_delay_ms: 400 });
    try {
      const { conversation_id: cv } = await dm('f3');
      let answered = false;
      const call = send(cv).then((r) => { answered = true; return r; });
      for (let i = 0; i < 100 && !(await control(emu.url, 'GET', `sent?conversation_id=${encodeURIComponent(cv)}`)).data.length; i++) await new Promise((r) => setTimeout(r, 5));
      expect(answered).toBe(false);
      const r = await call;
      const sent = (await control(emu.url, 'GET', `sent?conversation_id=${encodeURIComponent(cv)}`)).data;
      expect(sent.map((m: { message_id: string }) => m.message_id)).toEqual([r.data['message']['message_id']]);
    } finally {
      await control(emu.url, 'POST', 'config', { send_delay_ms: 0 });
    }
  });

  it('EU customers produce stripped im_receive_msg_eu; content/list has the message; a raw + is invalid', async () => {
    await control(emu.url, 'POST', 'customers', { username: 'anna_de', region: 'DE', display_name: 'Anna' });
    const { conversation_id: cv, message_id } = await dm('anna_de', { text: 'Hallo' });
    expect(cv).toContain('+');
    const hook = await sink.waitFor((x) => x.body.event === 'im_receive_msg_eu');
    expect(hook.content).toEqual({ to: 'acme_shop', to_user: { id: biz.openId, role: 'business_account' }, timestamp: now });
    expect(hook.body.user_openid).toBe(biz.openId);

    const list = await api(emu.url, 'GET', 'business/message/content/list/', { token: biz.accessToken, query: { business_id: biz.openId, conversation_id: cv } });
    expect(list.code).toBe(0);
    expect(list.data['messages']).toHaveLength(1);
    expect(list.data['messages'][0]).toMatchObject({
      message_id, message_type: 'TEXT', text: { body: 'Hallo' }, message_tag: { source: 'APP' },
      from_user: { role: 'PERSONAL_ACCOUNT', display_name: 'Anna', is_follower: false }, to_user: { role: 'BUSINESS_ACCOUNT', id: biz.openId },
    });
    expect(list.data['participants'].map((p: { role: string }) => p.role).sort()).toEqual(['BUSINESS_ACCOUNT', 'PERSONAL_ACCOUNT']);

    const raw = await fetch(`${emu.url}/open_api/v1.3/business/message/content/list/?business_id=${encodeURIComponent(biz.openId)}&conversation_id=${cv}`, {
      headers: { 'Access-Token': biz.accessToken },
    });
    expect(await raw.json()).toMatchObject({ code: 40002, message: 'Param conversation_id is invalid.', data: {} });
  });

  it('lists STRANGER and SINGLE conversations separately', async () => {
    const a = await dm('g1'); const b = await dm('g2');
    await send(a.conversation_id);
    const list = (type: string) => api(emu.url, 'GET', 'business/message/conversation/list/', {
      token: biz.accessToken, query: { business_id: biz.openId, conversation_type: type, limit: '10' },
    });
    expect((await list('SINGLE')).data).toMatchObject({ conversations: [{ conversation_id: a.conversation_id }], has_more: false });
    expect((await list('STRANGER')).data['conversations'].map((c: { conversation_id: string }) => c.conversation_id)).toEqual([b.conversation_id]);
    expect((await list('GROUP')).code).toBe(40002);
    const missing = await api(emu.url, 'GET', 'business/message/conversation/list/', { token: biz.accessToken, query: { business_id: biz.openId } });
    expect(missing.code).toBe(40002);
  });
});

describe('message kinds', () => {
  it('accepts quoted replies to messages of the conversation only', async () => {
    const { conversation_id: cv, message_id } = await dm('k1');
    const quoted = await send(cv, { referenced_message_info: { referenced_message_id: message_id } });
    expect(quoted.code).toBe(0);
    const echo = await sink.waitFor((x) => x.content['message_id'] === quoted.data['message']['message_id']);
    expect(echo.content['referenced_message_info']).toEqual({ referenced_message_id: message_id });
    expect((await send(cv, { referenced_message_info: { referenced_message_id: 'nope' } })).code).toBe(40002);
    const share = await send(cv, { message_type: 'SHARE_POST', text: undefined, share_post: { item_id: '7300000000000000001' } });
    expect(share.code).toBe(0);
    const shareEcho = await sink.waitFor((x) => x.content['message_id'] === share.data['message']['message_id']);
    expect(shareEcho.content).toMatchObject({ type: 'share_post', share_post: { video_id: '7300000000000000001' } });
  });

  it('delivers stickers with a fetchable URL and referrals in conversation/list (ad timestamp in seconds)', async () => {
    const { message_id } = await dm('k2', { type: 'sticker', referral: { source: 'ad', ad: { ad_id: '42', timestamp: 1_700_000_000_000 } } });
    const hook = await sink.waitFor((x) => x.content['message_id'] === message_id);
    const url = (hook.content['sticker'] as { url: string }).url;
    expect((await fetch(url)).headers.get('content-type')).toBe('image/png');
    const list = await api(emu.url, 'GET', 'business/message/conversation/list/', { token: biz.accessToken, query: { business_id: biz.openId, conversation_type: 'STRANGER' } });
    expect(list.data['conversations'][0].referral.ad[0]).toMatchObject({ ad_id: '42', timestamp: 1_700_000_000 });
  });
});

describe('faults', () => {
  it('makes the next N calls of an endpoint fail with the given code', async () => {
    const { conversation_id: cv } = await dm('h1');
    await control(emu.url, 'POST', 'faults', { endpoint: 'business/message/send', code: 50002, times: 2 });
    expect(await send(cv)).toMatchObject({ code: 50002, data: {} });
    expect((await send(cv)).code).toBe(50002);
    expect((await send(cv)).code).toBe(0);
    expect((await stats()).calls['business/message/send/']).toBe(3);
  });
});
