import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hmacKey } from '../../core/crypto.js';
import { signTiktok, verifyTiktokSignature } from './signature.js';

const SECRET = 'app-secret';
const body = Buffer.from('{"event":"im_receive_msg","content":"{}"}');
const now = 1_700_000_000_000;
// Computed independently of the module under test, as TikTok documents it.
const sign = (t: number, b: Buffer = body, secret = SECRET) => `t=${t},s=${createHmac('sha256', secret).update(`${t}.${b.toString()}`).digest('hex')}`;

describe('verifyTiktokSignature', () => {
  const key = hmacKey(SECRET);
  it('accepts TikTok\'s signature within the tolerance, in either part order', () => {
    expect(verifyTiktokSignature(sign(now / 1000), body, key, 300, now)).toEqual({ ok: true });
    const [t, s] = sign(now / 1000 - 299).split(',');
    expect(verifyTiktokSignature(`${s}, ${t}`, body, key, 300, now)).toEqual({ ok: true });
  });
  it('refuses a missing, malformed, wrong, stale or future signature, and a changed body', () => {
    expect(verifyTiktokSignature(undefined, body, key, 300, now)).toEqual({ ok: false, reason: 'missing Tiktok-Signature header' });
    expect(verifyTiktokSignature('garbage', body, key, 300, now).ok).toBe(false);
    expect(verifyTiktokSignature(sign(now / 1000, body, 'other'), body, key, 300, now)).toEqual({ ok: false, reason: 'signature mismatch' });
    expect(verifyTiktokSignature(sign(now / 1000 - 301), body, key, 300, now)).toEqual({ ok: false, reason: 'stale timestamp' });
    expect(verifyTiktokSignature(sign(now / 1000 + 301), body, key, 300, now)).toEqual({ ok: false, reason: 'stale timestamp' });
    expect(verifyTiktokSignature(sign(now / 1000), Buffer.from(body.toString() + ' '), key, 300, now).ok).toBe(false);
  });
  it('signs the way it verifies', () => {
    expect(signTiktok(key, body, now / 1000)).toBe(sign(now / 1000));
  });
});
