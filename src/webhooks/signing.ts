import { createHmac, randomBytes, type KeyObject } from 'node:crypto';
import { hmacKey } from '../core/crypto.js';

/**
 * Standard Webhooks signing (v1, HMAC-SHA256). The secret is `whsec_` + base64 of 32 random bytes;
 * the HMAC key is the base64-decoded part after the prefix; the signed content is
 * `${id}.${timestamp}.${body}` and the header value `v1,<base64 signature>`.
 */
export const SECRET_PREFIX = 'whsec_';

export function generateSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString('base64');
}

/** The HMAC key of a `whsec_…` secret, as a KeyObject (fast on every Node version). */
export function signingKey(secret: string): KeyObject {
  const raw = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret;
  return hmacKey(Buffer.from(raw, 'base64'));
}

export function sign(key: KeyObject, id: string, timestampS: number, body: string): string {
  return 'v1,' + createHmac('sha256', key).update(`${id}.${timestampS}.${body}`).digest('base64');
}

/**
 * The three headers of one delivery attempt. `timestampS` is the time of this attempt. With several
 * keys (a secret being rotated), one signature per key, space-separated, as Standard Webhooks
 * allows: a consumer that knows either secret verifies it.
 */
export function signatureHeaders(keys: KeyObject | KeyObject[], id: string, timestampS: number, body: string): Record<string, string> {
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestampS),
    'webhook-signature': (Array.isArray(keys) ? keys : [keys]).map((k) => sign(k, id, timestampS, body)).join(' '),
  };
}
