/**
 * Identifier formats. Account ids are derived from (appId, username) with a hash so that a
 * restarted emulator, even without a state file, hands out the same open_id / unique_identifier
 * and the gateway's stored accounts and contacts still match. Everything else is random.
 */
import { createHash, randomBytes } from 'node:crypto';
import { randomIdHex } from '../core/random-pool.js';

function digest(...parts: string[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\u0000');
  return h.digest();
}

/**
 * Business open_id, shaped like TikTok's examples ("-000pcMJDSDHK-UvK012b10KKXmCvWmVF8o":
 * a "-000" prefix and base64url characters, 35 characters in all).
 */
export function businessOpenId(appId: string, username: string): string {
  return '-000' + digest('business', appId, username.toLowerCase()).toString('base64url').slice(0, 31);
}

/** Customer unique_identifier: same shape as a business open_id, from a different hash domain. */
export function customerUniqueId(appId: string, username: string): string {
  return '-000' + digest('customer', appId, username.toLowerCase()).toString('base64url').slice(0, 31);
}

/**
 * Conversation id: standard base64 of 20 bytes, so 27 characters plus one "=" pad, like
 * TikTok's "u5NkbnslAgxpOelvH01Y+rs7Uw=". Real ids contain "+" about one time in three; here
 * character 10 is always "+" so that a client which forgets to encode "+" as %2B in query
 * strings fails every time instead of occasionally.
 */
export function conversationId(businessId: string, customerId: string): string {
  const b64 = digest('conversation', businessId, customerId).subarray(0, 20).toString('base64');
  return b64.slice(0, 10) + '+' + b64.slice(11);
}

let lastMs = 0;
let seq = 0;
/**
 * Message ids: 19-digit decimal snowflakes (time << 22 | sequence), unique within a process and,
 * because they start from the wall clock, across restarts.
 */
export function messageId(): string {
  const ms = Date.now();
  if (ms === lastMs) seq = (seq + 1) & 0x3fffff;
  else { lastMs = ms; seq = parseInt(randomIdHex(2), 16) & 0xfff; }
  return ((BigInt(ms) << 22n) | BigInt(seq)).toString();
}

export function randomToken(prefix: string, bytes = 24): string {
  return prefix + randomBytes(bytes).toString('base64url');
}

export function mediaId(): string {
  return 'v' + randomBytes(15).toString('hex');
}

export function randomDigits(n: number): string {
  let s = '7';
  while (s.length < n) s += String(randomBytes(1)[0]! % 10);
  return s;
}

let stampSecond = NaN;
let stamp = '';
/** TikTok request ids look like "2024112812345678ABCDEF…": a UTC timestamp (to the second) then hex. */
export function requestId(nowMs: number): string {
  const second = Math.floor(nowMs / 1000);
  if (second !== stampSecond) {
    stampSecond = second;
    stamp = new Date(second * 1000).toISOString().replace(/[-:T.Z]/g, '').slice(0, 14);
  }
  return stamp + randomIdHex(9).toUpperCase();
}
