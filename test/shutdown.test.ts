import http from 'node:http';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { inProgress } from '../src/app.js';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { waitFor } from './helpers/wait.js';

/** Stopping the server: what is being answered is answered, and then nothing holds the process. */
describe('shutdown', () => {
  const gateways: TestGateway[] = [];
  const agent = new http.Agent({ keepAlive: true });
  afterAll(async () => {
    agent.destroy();
    for (const g of gateways) await g.close();
  });

  it('answers a request in progress when the HTTP server starts closing, then closes its kept-alive connection', async () => {
    const gw = await startTestGateway();
    gateways.push(gw);
    const { hostname, port } = new URL(gw.url);
    const body = JSON.stringify({ event: 'im_receive_msg', user_openid: 'nobody', content: '{}' });
    // A webhook whose body is still arriving: in progress until it is all there.
    const req = http.request({
      host: hostname, port, method: 'POST', path: '/webhooks/tiktok', agent,
      headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) },
    });
    const answered = new Promise<number>((resolve, reject) => {
      req.on('response', (res) => { res.resume(); res.on('end', () => resolve(res.statusCode!)); });
      req.on('error', reject);
    });
    req.write(body.slice(0, 10));
    const server = gw.server;
    await waitFor('the webhook in progress', async () => (await inProgress(server.app)).startsWith('1 request(s) in progress'));
    const closed = server.close();
    // Past the workers: the HTTP server is closing, with this request in progress.
    await waitFor('the HTTP server closing', async () => (await server.closing())?.startsWith('HTTP server'));
    expect(await server.closing()).toMatch(/^HTTP server: 1 request\(s\) in progress: POST \/webhooks\/tiktok for [0-9.]+ s; 1 connection\(s\) open$/);
    req.end(body.slice(10));
    expect(await answered).toBe(401); // unsigned: refused, but answered
    // Node keeps that connection open after its answer (keep-alive, for 72 s) unless it is swept:
    // close() would outlast this test's timeout.
    await closed;
    expect(await server.closing()).toBeNull();
  });

  it('does not wait for a connection whose request never reached a handler (headers still arriving)', async () => {
    const g = await startTestGateway();
    gateways.push(g);
    const { hostname, port } = new URL(g.url);
    const socket = net.connect(Number(port), hostname);
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write('POST /webhooks/tiktok HTTP/1.1\r\nHost: dmgate\r\nContent-Type: application/json\r\n');
    await waitFor('the half-sent request\'s connection', async () => (await inProgress(g.server.app)).endsWith('; 1 connection(s) open'));
    expect(await inProgress(g.server.app)).toBe('0 request(s) in progress; 1 connection(s) open');
    // Never idle for Node (a message has begun), never answered: without closing it, close() would
    // wait for the client or for Node's request timeout (minutes), past this test's timeout.
    await g.server.close();
    await ended;
    expect(socket.destroyed).toBe(true);
  });
});
