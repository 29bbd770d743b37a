import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { PNG, stats } from './helpers/outbound.js';
import { waitFor } from './helpers/wait.js';

/**
 * TikTok counts every business/message/ call of a business against one limit (10 a second), reads
 * included. The reads dmgate makes outside the sender (the content of EEA customers' DMs, which
 * TikTok's webhook leaves out, and the download URLs of inbound media) go through the account's
 * rate gate like its sends: a burst of either never meets a 40100.
 */
describe('TikTok reads in the account\'s rate', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway();
    await gw.connect('pace_shop');
  });
  afterAll(async () => {
    await gw?.close();
  });

  const received = async () => (await gw.server.ctx.database.db.selectFrom('messages').select(['id', 'text', 'media'])
    .where('direction', '=', 'inbound').execute());

  it('reads a burst of EEA customers\' DMs without a throttle, and stores every one', async () => {
    const names = Array.from({ length: 12 }, (_, i) => `eea_${i}`);
    for (const name of names) await gw.control('customers', { username: name, region: 'DE' });
    const before = (await stats(gw)).calls['business/message/content/list/'] ?? 0;
    await Promise.all(names.map((name) => gw.control('dm', { business: 'pace_shop', from: name, text: `Hallo von ${name}` })));
    await waitFor('every EEA DM stored', async () => {
      const texts = new Set((await received()).map((r) => r.text));
      return names.every((n) => texts.has(`Hallo von ${n}`));
    }, 30000);
    const s = await stats(gw);
    // More than one second's worth of reads, so the pacing was needed.
    expect((s.calls['business/message/content/list/'] ?? 0) - before).toBeGreaterThan(10);
    expect(s.violations.qps).toBe(0);
  });

  it('fetches a burst of inbound images without a throttle', async () => {
    const sent = await Promise.all(Array.from({ length: 12 }, (_, i) =>
      gw.control<{ message_id: string }>('dm', { business: 'pace_shop', from: `img_${i}`, type: 'image', image: { data_base64: PNG.toString('base64') } })));
    await gw.drain();
    const urls = await waitFor('every image stored', async () => {
      const rows = (await received()).filter((r) => r.media);
      return rows.length >= sent.length ? rows.map((r) => JSON.parse(r.media!).url as string) : null;
    });
    const answers = await Promise.all(urls.map((url) => fetch(gw.url + url, { headers: { authorization: `Bearer ${gw.key}` } })));
    expect(answers.map((a) => a.status)).toEqual(urls.map(() => 200));
    for (const a of answers) expect(Buffer.from(await a.arrayBuffer()).equals(PNG)).toBe(true);
    expect((await stats(gw)).violations.qps).toBe(0);
  });
});

/**
 * An EEA webhook's read of TikTok takes a paced call per conversation updated lately: seconds in a
 * burst. It runs beside the processor, which goes on with other businesses' webhooks meanwhile.
 */
describe('an EEA read and the other businesses', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    // Two calls a second: the read of six EEA conversations (two lists, six reads) takes 3-4 s.
    gw = await startTestGateway({ env: { DMGATE_TIKTOK_QPS: '2' }, emulator: { qps: 2 } });
    await gw.connect('eea_shop');
    await gw.connect('other_shop');
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('applies another business\'s DM while a business\'s EEA read is still under way, then every EEA DM', async () => {
    const db = gw.server.ctx.database.db;
    const names = Array.from({ length: 6 }, (_, i) => `de_${i}`);
    for (const name of names) await gw.control('customers', { username: name, region: 'FR' });
    const eeaShop = await db.selectFrom('accounts').select('external_id').where('username', '=', 'eea_shop').executeTakeFirstOrThrow();
    await Promise.all(names.map((name) => gw.control('dm', { business: 'eea_shop', from: name, text: `Bonjour de ${name}` })));
    const other = await gw.control<{ message_id: string }>('dm', { business: 'other_shop', from: 'sam', text: 'Is this in stock?' });
    const eeaWaiting = await waitFor('the other business\'s DM', async () => {
      const stored = await db.selectFrom('messages').select('id').where('provider_message_id', '=', other.message_id).executeTakeFirst();
      if (!stored) return null;
      const pending = await db.selectFrom('inbound_events').select((eb) => eb.fn.countAll<number>().as('n'))
        .where('business_id', '=', eeaShop.external_id).where('status', '=', 'pending').executeTakeFirstOrThrow();
      return { pending: Number(pending.n) };
    });
    // Applied before the EEA read ended: its webhooks were still waiting for it.
    expect(eeaWaiting.pending).toBeGreaterThan(0);
    await waitFor('every EEA DM', async () => {
      const texts = new Set((await db.selectFrom('messages').select('text').where('direction', '=', 'inbound').execute()).map((r) => r.text));
      return names.every((n) => texts.has(`Bonjour de ${n}`));
    }, 30000);
    expect((await stats(gw)).violations.qps).toBe(0);
  });

  it('reads only the conversations whose DMs do not come with their content', async () => {
    const calls = async () => (await stats(gw)).calls['business/message/content/list/'] ?? 0;
    const db = gw.server.ctx.database.db;
    // Customers outside the EEA: their DMs come by webhook, with content.
    const sg = Array.from({ length: 6 }, (_, i) => `sg_${i}`);
    await Promise.all(sg.map((name) => gw.control('dm', { business: 'other_shop', from: name, text: `Hi from ${name}` })));
    await gw.drain();
    await gw.control('customers', { username: 'klara', region: 'AT' });
    const before = await calls();
    await gw.control('dm', { business: 'other_shop', from: 'klara', text: 'Servus' });
    await waitFor('the EEA DM', async () => (await db.selectFrom('messages').select('id').where('text', '=', 'Servus').executeTakeFirst()) ?? null);
    await gw.drain();
    // Only klara's conversation was read (and sam's of the test before, whose DM also came by webhook, was not).
    expect(await calls() - before).toBe(1);
    const again = await calls();
    await gw.control('dm', { business: 'other_shop', from: 'klara', text: 'Noch eine Frage' });
    await waitFor('the second EEA DM', async () => (await db.selectFrom('messages').select('id').where('text', '=', 'Noch eine Frage').executeTakeFirst()) ?? null);
    await gw.drain();
    expect(await calls() - again).toBe(1);
  });
});

