import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { customerWrites, reply, sentAtEmulator, settled } from './helpers/outbound.js';

/**
 * U+0000 cannot be stored in PostgreSQL's text. Requests carrying it are refused with the field
 * named (not a 500, and the same on SQLite); a customer message carrying it is still stored and
 * delivered, with U+FFFD in its place, instead of failing its processing for good.
 */
describe('the NUL character (U+0000)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
    await gw.connect('nul_shop');
  });
  afterAll(async () => { await gw?.close(); });

  it('in a request is refused with the field named, and nothing is written or sent', async () => {
    const conv = await customerWrites(gw, 'nul_shop', 'nul_buyer');
    await settled(gw);
    const sentBefore = (await sentAtEmulator(gw)).length;
    const messagesBefore = (await gw.api('GET', `/v1/conversations/${conv.id}/messages`)).body.data.length;

    const text = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'a\u0000b' });
    expect(text.status).toBe(400);
    expect(text.body.error).toMatchObject({ code: 'invalid_request', details: { field: 'text' } });
    const button = await reply(gw, { conversation_id: conv.id, type: 'template', template: { title: 'Pick', buttons: [{ title: 'ok' }, { title: 'n\u0000o' }] } });
    expect(button.body.error).toMatchObject({ code: 'invalid_request', details: { field: 'template.buttons[1].title' } });
    const query = await gw.api('GET', '/v1/conversations?account_id=acct_%00');
    expect(query.status).toBe(400);
    expect(query.body.error.details.field).toBe('account_id');
    const param = await gw.api('GET', '/v1/messages/msg_%00');
    expect(param.status).toBe(400);
    expect(param.body.error.details.field).toBe('id');
    const login = await fetch(`${gw.url}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'a\u0000@example.com', password: 'whatever-long' }) });
    expect(login.status).toBe(400);

    await settled(gw);
    expect((await gw.api('GET', `/v1/conversations/${conv.id}/messages`)).body.data.length).toBe(messagesBefore);
    expect((await sentAtEmulator(gw)).length).toBe(sentBefore);
  });

  it('in a customer message is stored as U+FFFD: the message is received, not lost', async () => {
    const conv = await customerWrites(gw, 'nul_shop', 'nul_writer', 'size\u0000M?');
    const history = await gw.api('GET', `/v1/conversations/${conv.id}/messages`);
    expect(history.body.data.map((m: { text: string }) => m.text)).toContain('size\uFFFDM?');
    const ok = await reply(gw, { conversation_id: conv.id, type: 'text', text: 'Yes, M is in stock' });
    expect(ok.status).toBe(202);
  });
});
