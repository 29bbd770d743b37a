import { Writable } from 'node:stream';
import { API_KEY_PREFIX } from '../../src/auth/api-keys.js';
import { MIN_PASSWORD } from '../../src/auth/users.js';
import { ERROR_STATUS, type ErrorCode } from '../../src/core/errors.js';
import { SESSION_COOKIE } from '../../src/http/authenticate.js';
import type { RunningServer } from '../../src/server.js';
import { SECRET_PREFIX } from '../../src/webhooks/signing.js';

/**
 * Two promises every end-to-end test keeps, checked when its gateway closes: no secret appears in
 * the gateway's log, and every error answer is in DESIGN §5's shape.
 */

/** Every log line the gateway wrote, for tests that check what must never be logged. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    cb();
  }
  get text(): string { return this.lines.join('\n'); }
}

/**
 * The passwords a request body carries. (Shorter strings than a password may be are left out: they
 * could turn up in a log by chance, and the gateway refuses them anyway.)
 */
export function passwordsIn(body: unknown): string[] {
  if (!body || typeof body !== 'object') return [];
  return ['password', 'current_password', 'new_password'].map((field) => (body as Record<string, unknown>)[field])
    .filter((v): v is string => typeof v === 'string' && v.length >= MIN_PASSWORD);
}

/** Secrets an API answer hands out once: API keys and endpoint signing secrets (session cookies come as headers). */
const HANDED_OUT = new RegExp(`\\b(?:${API_KEY_PREFIX}[\\w-]{16,}|${SECRET_PREFIX}[\\w+/=]{16,})`, 'g');

/** The TikTok tokens the gateway holds now (stored encrypted), in clear. */
export async function tokensStored(server: RunningServer): Promise<string[]> {
  const { database, box } = server.ctx;
  const rows = await database.db.selectFrom('accounts').select(['access_token_enc', 'refresh_token_enc']).execute();
  return rows.flatMap((r) => [r.access_token_enc, r.refresh_token_enc]).filter((x): x is string => Boolean(x)).map((x) => box.open(x));
}

/**
 * What is wrong with an error answer, against DESIGN §5's one shape:
 * `{ "error": { "code", "message", "request_id", "details" } }`, a code of the closed list, answered
 * with that code's status. Null when nothing is.
 */
export function errorShapeProblem(status: number, contentType: string | null, body: unknown): string | null {
  if (!contentType?.startsWith('application/json')) return `answered ${contentType ?? 'no content type'}, not JSON`;
  const error = (body as { error?: Record<string, unknown> } | null)?.error;
  if (!error || typeof error !== 'object') return 'no "error" object';
  const code = error.code as ErrorCode;
  if (typeof code !== 'string' || !(code in ERROR_STATUS)) return `code ${JSON.stringify(code)} is not in the closed list`;
  if (ERROR_STATUS[code] !== status) return `code ${code} goes with ${ERROR_STATUS[code]}, not ${status}`;
  if (typeof error.message !== 'string' || !error.message) return 'no message';
  if (typeof error.request_id !== 'string' || !error.request_id.startsWith('req_')) return 'no request_id';
  if (!error.details || typeof error.details !== 'object' || Array.isArray(error.details)) return 'details is not an object';
  const extra = Object.keys(error).filter((k) => !['code', 'message', 'request_id', 'details'].includes(k));
  return extra.length ? `fields beyond the shape: ${extra.join(', ')}` : null;
}

/** What a test's exchanges with the gateway taught it: the secrets it knows of, and the misshapen error answers. */
export class AnswerAudit {
  private readonly secrets = new Map<string, string>();
  private readonly misshapen: string[] = [];

  /** A secret the test knows of, with what it is. */
  keep(value: string | null | undefined, what: string): void {
    if (value) this.secrets.set(value, what);
  }

  /** One exchange: the passwords its request sent, the secrets its answer handed out, its error's shape. */
  note(request: string, body: unknown, res: Response, text: string, parsed: unknown): void {
    for (const password of passwordsIn(body)) this.keep(password, 'a password');
    for (const m of text.matchAll(HANDED_OUT)) this.keep(m[0], m[0].startsWith(API_KEY_PREFIX) ? 'an API key' : 'a signing secret');
    for (const c of res.headers.getSetCookie()) {
      if (c.startsWith(`${SESSION_COOKIE}=`)) this.keep(c.split(';')[0].split('=').slice(1).join('='), 'a session cookie');
    }
    const problem = res.status >= 400 ? errorShapeProblem(res.status, res.headers.get('content-type'), parsed) : null;
    if (problem) this.misshapen.push(`${request} → ${res.status}: ${problem}`);
  }

  /** Fails if a secret appears in the log, or an answer was outside the shape. */
  check(logs: LogCapture): void {
    const text = logs.text;
    const found = [...this.secrets].filter(([secret]) => text.includes(secret)).map(([, what]) => what);
    if (found.length) throw new Error(`secrets appear in the gateway's log: ${[...new Set(found)].join(', ')}`);
    if (this.misshapen.length) throw new Error(`error answers outside the documented shape (DESIGN §5):\n${this.misshapen.join('\n')}`);
  }
}
