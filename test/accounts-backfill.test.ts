import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, APP_ID, APP_SECRET, type TestGateway } from './helpers/gateway.js';
import { account, storedEvents, waitBackfill } from './helpers/accounts.js';
import { registerTiktokWebhook } from '../src/providers/tiktok/webhook-registration.js';

const DAY = 86_400_000;
const HOUR = 3_600_000;

/** Backfill on connect and on demand: history is stored once, announced never. */
describe('account backfill', () => {
  let gw: TestGateway;
  let offset = 0;
  const clock = () => Date.now() + offset;
  let id: string;

  const count = async (table: 'messages' | 'conversations') =>
    Number((await gw.server.ctx.database.db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).where('account_id', '=', id).executeTakeFirstOrThrow()).n);
  const announced = async () => (await storedEvents(gw)).filter((e) => e.account_id === id && e.event !== 'account.connected');

  beforeAll(async () => {
    gw = await startTestGateway({ clock, emulator: { clock } });
    await gw.control('businesses', { username: 'history_shop' });
    // A conversation from 100 days ago: outside what TikTok lists (90 days).
    offset = -100 * DAY;
    await gw.control('dm', { business: 'history_shop', from: 'ancient', text: 'from long ago' });
    offset = 0;
    const now = Date.now();
    await gw.control('dm', { business: 'history_shop', from: 'old_amy', text: 'hi, last week', timestamp: now - 10 * DAY });
    await gw.control('dm', { business: 'history_shop', from: 'old_amy', text: 'still there?', timestamp: now - 10 * DAY + HOUR });
    await gw.control('dm', { business: 'history_shop', from: 'old_bob', text: 'three days ago', timestamp: now - 3 * DAY });
    const recent = await gw.control<{ conversation_id: string }>('dm', { business: 'history_shop', from: 'recent_cy', text: 'two hours ago', timestamp: now - 2 * HOUR });
    await gw.control('app-reply', { conversation_id: recent.conversation_id, text: 'answered in the TikTok app' });
    await gw.drain(); // their webhooks came before the account was connected: ignored
  });
  afterAll(async () => { await gw?.close(); });

  it('reads the last 90 days on connect, stores history without announcing it, and shows progress', async () => {
    id = (await gw.connect('history_shop')).id;
    const b = await waitBackfill(gw, id);
    expect(b).toMatchObject({ status: 'done', days: 90, conversations_total: 3, conversations_done: 3, messages: 5, error: null });
    expect(Date.parse(b.started_at)).toBeGreaterThanOrEqual(Date.parse(b.requested_at));
    expect(Date.parse(b.finished_at)).toBeGreaterThanOrEqual(Date.parse(b.started_at));
    expect(await count('messages')).toBe(5);
    expect(await count('conversations')).toBe(3);
    const contacts = (await gw.api('GET', '/v1/contacts?limit=200')).body.data.map((c: any) => c.username);
    expect(contacts).toEqual(expect.arrayContaining(['old_amy', 'old_bob', 'recent_cy']));
    expect(contacts).not.toContain('ancient');
    expect(await announced()).toEqual([]); // no message.received, message.sent, conversation.created, contact.created

    // History rebuilds the reply window: the recent conversation is open with the app reply counted.
    const convs = (await gw.api('GET', `/v1/conversations?account_id=${id}`)).body.data;
    const byContact = Object.fromEntries(convs.map((c: any) => [c.contact.username, c]));
    const recent = (await gw.api('GET', `/v1/conversations/${byContact.recent_cy.id}`)).body;
    expect(recent.window).toMatchObject({ open: true, quota_remaining: 9 });
    const bob = (await gw.api('GET', `/v1/conversations/${byContact.old_bob.id}`)).body;
    expect(bob.window.open).toBe(false);
    const msgs = (await gw.api('GET', `/v1/conversations/${byContact.recent_cy.id}/messages`)).body.data;
    expect(msgs.map((m: any) => [m.direction, m.text])).toEqual(expect.arrayContaining([['inbound', 'two hours ago'], ['outbound', 'answered in the TikTok app']]));
  });

  it('run again: nothing is stored twice and nothing is announced', async () => {
    const first = (await account(gw, id)).backfill;
    const res = await gw.api('POST', `/v1/accounts/${id}/backfill`);
    expect(res.status).toBe(202);
    expect(['queued', 'running', 'done']).toContain(res.body.backfill.status);
    const b = await waitBackfill(gw, id, first.requested_at);
    expect(b).toMatchObject({ status: 'done', conversations_total: 3, conversations_done: 3, messages: 0 });
    expect(b.history_before).toBe(first.history_before);
    expect(await count('messages')).toBe(5);
    expect(await count('conversations')).toBe(3);
    expect(await announced()).toEqual([]);
    expect((await gw.api('POST', `/v1/accounts/${id}/backfill`, { days: 91 })).status).toBe(400);
  });

  it('a message after the connect that no webhook brought is announced once', async () => {
    const ctx = gw.server.ctx;
    await registerTiktokWebhook(ctx.config, 'http://127.0.0.1:9/webhooks/tiktok'); // TikTok cannot reach us
    let dm: { message_id: string };
    try {
      dm = await gw.control('dm', { business: 'history_shop', from: 'late_dan', text: 'are you open today?' });
      const before = (await account(gw, id)).backfill;
      expect((await gw.api('POST', `/v1/accounts/${id}/backfill`, { days: 7 })).status).toBe(202);
      const b = await waitBackfill(gw, id, before.requested_at);
      expect(b).toMatchObject({ status: 'done', days: 7, messages: 1 });
    } finally {
      await registerTiktokWebhook(ctx.config, `${gw.url}/webhooks/tiktok`);
    }
    await gw.drain().catch(() => undefined); // the emulator may still retry the push (now to us): a duplicate
    await new Promise((r) => setTimeout(r, 300));
    const received = (await storedEvents(gw, 'message.received')).filter((e) => e.provider_message_id === dm.message_id);
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({ account_id: id, text: 'are you open today?' });
    expect(await count('messages')).toBe(6);
  });

  it('dmgate accounts backfill runs it with progress on stderr', async () => {
    const env: Record<string, string> = {
      ...process.env as Record<string, string>,
      DMGATE_DATA_DIR: gw.storage.dataDir, DATABASE_URL: gw.storage.databaseUrl,
      TIKTOK_APP_ID: APP_ID, TIKTOK_APP_SECRET: APP_SECRET,
      TIKTOK_API_BASE: `${gw.emulatorUrl}/open_api/v1.3/`, TIKTOK_AUTH_URL: `${gw.emulatorUrl}/v2/auth/authorize`,
    };
    const run = (args: string[]) => new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { env, cwd: process.cwd() });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => { stdout += d; });
      child.stderr.on('data', (d) => { stderr += d; });
      const timer = setTimeout(() => { stderr += '\n[killed after 40 s]'; child.kill('SIGKILL'); }, 40_000);
      child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
    });
    const res = await run(['accounts', 'backfill', '--account', id]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toMatch(/backfill (running|done): 4\/4 conversations, 0 new messages/);
    expect(JSON.parse(res.stdout.trim().split('\n').at(-1)!)).toMatchObject({ status: 'done', conversations_total: 4, messages: 0 });
    expect(await count('messages')).toBe(6);
    const list = await run(['accounts', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain(`${id}\t@history_shop\tactive`);
    const unknown = await run(['accounts', 'backfill', '--account', 'acct_nope']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('does not exist');
  }, 150_000);
});
