import { expect } from 'vitest';
import type { TestGateway } from './gateway.js';

/** Helpers for the outbound (reply) tests. */

import { waitFor } from './wait.js';

export { waitFor };

/** The customer writes (at the emulator), the gateway processes it; returns the gateway conversation. */
export async function customerWrites(gw: TestGateway, business: string, from: string, text = 'Hello?', extra: Record<string, unknown> = {}): Promise<{ id: string; external_id: string; message_id: string }> {
  const dm = await gw.control<{ message_id: string; conversation_id: string }>('dm', { business, from, text, ...extra });
  await gw.drain();
  const conv = await waitFor('the conversation', async () => gw.server.ctx.database.db.selectFrom('conversations').select(['id', 'external_id'])
    .where('external_id', '=', dm.conversation_id).executeTakeFirst());
  await waitFor('the customer message', async () => gw.server.ctx.database.db.selectFrom('messages').select('id')
    .where('provider_message_id', '=', dm.message_id).executeTakeFirst());
  return { ...conv, message_id: dm.message_id };
}

/** Waits until no reply is queued or being sent (so counts at the emulator are final). */
export async function settled(gw: TestGateway, timeoutMs = 15000): Promise<void> {
  await waitFor('the outbound queue to settle', async () => {
    const row = await gw.server.ctx.database.db.selectFrom('messages').select((eb) => eb.fn.countAll<number>().as('n'))
      .where('status', 'in', ['queued', 'sending']).executeTakeFirstOrThrow();
    return Number(row.n) === 0;
  }, timeoutMs);
}

export async function reply(gw: TestGateway, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  return gw.api('POST', '/v1/messages', body, headers);
}

export async function waitStatus(gw: TestGateway, messageId: string, status: string | string[], timeoutMs = 15000): Promise<any> {
  const want = Array.isArray(status) ? status : [status];
  return waitFor(`message ${messageId} to be ${want.join('/')}`, async () => {
    const res = await gw.api('GET', `/v1/messages/${messageId}`);
    return want.includes(res.body.status) ? res.body : null;
  }, timeoutMs);
}

/** Every stored event of a type (the outbox), parsed, in order. */
export async function events(gw: TestGateway, type?: string): Promise<Record<string, any>[]> {
  let q = gw.server.ctx.database.db.selectFrom('events').select(['payload', 'type']).orderBy('seq');
  if (type) q = q.where('type', '=', type);
  return (await q.execute()).map((r) => JSON.parse(r.payload) as Record<string, any>);
}

export async function sentAtEmulator(gw: TestGateway, conversationExternalId?: string): Promise<Record<string, any>[]> {
  const q = conversationExternalId ? `sent?conversation_id=${encodeURIComponent(conversationExternalId)}` : 'sent';
  const res = await fetch(`${gw.emulatorUrl}/_control/${q}`);
  return ((await res.json()) as { data: Record<string, any>[] }).data;
}

export async function stats(gw: TestGateway): Promise<any> {
  return (await fetch(`${gw.emulatorUrl}/_control/stats`)).json();
}

export async function expectNoViolations(gw: TestGateway): Promise<void> {
  const s = await stats(gw);
  expect(s.violations).toEqual({ qps: 0, window: 0, quota: 0, daily_cap: 0, content: 0 });
}

/** A valid 1×1 PNG. */
export const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63f8cfc0f01f0005000201a5f1c2a30000000049454e44ae426082', 'hex');
/** The start of a JPEG (enough for the magic-bytes check). */
export const JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10]), Buffer.from('JFIF\0', 'binary'), Buffer.alloc(64, 1), Buffer.from([0xff, 0xd9])]);
export const GIF = Buffer.from('47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b', 'hex');
