import http from 'node:http';
import https from 'node:https';

export interface JsonExchange {
  status: number;
  text: string;
}

/** TikTok answers in a few KB; anything much larger is not an API envelope. */
const MAX_ANSWER_BYTES = 8 * 1024 * 1024;

/**
 * JSON calls to TikTok over keep-alive node:http agents. The sender makes up to 10 calls per second
 * per account, for hundreds of accounts: fetch (undici, web streams, an AbortSignal per call)
 * costs several times the CPU of a plain request on a reused socket.
 *
 * The whole exchange must fit in `timeoutMs`; redirects are not followed (a 3xx comes back as is).
 * Rejects only when no complete answer arrived (connect error, reset, timeout, oversized answer),
 * with `requestWritten` on the error: whether the whole request had gone out, so that TikTok may
 * have acted on it.
 */
export class JsonTransport {
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 512, maxFreeSockets: 256, scheduling: 'lifo' });
  private readonly httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 512, maxFreeSockets: 256, scheduling: 'lifo' });

  request(url: URL, method: 'GET' | 'POST', headers: Record<string, string>, body: string | undefined, timeoutMs: number): Promise<JsonExchange> {
    const isHttps = url.protocol === 'https:';
    const payload = body === undefined ? undefined : Buffer.from(body, 'utf8');
    const allHeaders: Record<string, string> = { accept: 'application/json', ...headers };
    if (payload) allHeaders['content-length'] = String(payload.length);
    return new Promise<JsonExchange>((resolve, reject) => {
      let settled = false;
      let written = false;
      const settle = (err: Error | null, value?: JsonExchange) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(Object.assign(err, { requestWritten: written }));
        else resolve(value!);
      };
      const req = (isHttps ? https : http).request(url, { method, headers: allHeaders, agent: isHttps ? this.httpsAgent : this.httpAgent }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_ANSWER_BYTES) {
            settle(new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`));
            res.destroy();
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => settle(null, { status: res.statusCode ?? 0, text: chunks.length === 1 ? chunks[0].toString('utf8') : Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err) => settle(err));
        res.on('aborted', () => settle(new Error('connection closed before the answer was complete')));
      });
      const timer = setTimeout(() => {
        settle(new Error(`no answer within ${timeoutMs} ms`));
        req.destroy();
      }, timeoutMs);
      // From here on TikTok may have acted on the request, whatever becomes of its answer.
      req.on('finish', () => { written = true; });
      req.on('error', (err) => settle(err));
      req.end(payload);
    });
  }
}
