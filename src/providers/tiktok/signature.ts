import type { KeyObject } from 'node:crypto';
import { createHmac } from 'node:crypto';
import { hmacSha256, safeEqual } from '../../core/crypto.js';
import type { WebhookCheck } from '../types.js';

/**
 * TikTok's `Tiktok-Signature: t=<unix s>,s=<hex HMAC-SHA256(app secret, "t.rawBody")>`.
 * Checked on the raw bytes, in constant time, with a tolerance on t (TikTok retries with the same t,
 * so a strict 5 s turns clock skew into permanent rejection; the default is 300 s).
 */
export function verifyTiktokSignature(
  header: string | undefined, rawBody: Buffer, key: KeyObject, toleranceS: number, nowMs: number,
): WebhookCheck {
  if (!header) return { ok: false, reason: 'missing Tiktok-Signature header' };
  let t: string | undefined;
  let s: string | undefined;
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (name === 't') t = value;
    else if (name === 's') s = value;
  }
  if (!t || !s || !/^\d+$/.test(t)) return { ok: false, reason: 'malformed Tiktok-Signature header' };
  // Two updates instead of concatenating: the body is not copied on the hot path.
  const expected = createHmac('sha256', key).update(t + '.').update(rawBody).digest('hex');
  if (!safeEqual(expected, s.toLowerCase())) return { ok: false, reason: 'signature mismatch' };
  if (Math.abs(nowMs / 1000 - Number(t)) > toleranceS) return { ok: false, reason: 'stale timestamp' };
  return { ok: true };
}

export function signTiktok(key: KeyObject, rawBody: string | Buffer, tSeconds: number): string {
  const body = typeof rawBody === 'string' ? Buffer.from(rawBody) : rawBody;
  return `t=${tSeconds},s=${hmacSha256(key, Buffer.concat([Buffer.from(tSeconds + '.'), body]), 'hex')}`;
}
