import { randomIdBytes } from './random-pool.js';

/** Id prefixes of DESIGN §4; the closed list keeps typos out of stored ids. */
export type IdPrefix =
  | 'acct' | 'ct' | 'cv' | 'msg' | 'evt' | 'wh' | 'whd' | 'usr' | 'key' | 'lnk' | 'req' | 'med' | 'att' | 'ses' | 'cnv' | 'ar';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz'; // Crockford base32, lower case
let lastMs = -1;
let lastRandom: Uint8Array = new Uint8Array(10);

function encodeTime(ms: number): string {
  let out = '';
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[ms % 32] + out;
    ms = Math.floor(ms / 32);
  }
  return out;
}

/** The smallest id of this prefix created at or after `ms` (ids sort by creation time). */
export function idFloor(prefix: string, ms: number): string {
  return `${prefix}_${encodeTime(Math.max(0, Math.floor(ms)))}${'0'.repeat(16)}`;
}

/** The creation time (ms) an id encodes. */
export function idTime(id: string): number {
  const body = id.slice(id.indexOf('_') + 1, id.indexOf('_') + 11);
  let t = 0;
  for (const ch of body) t = t * 32 + ALPHABET.indexOf(ch);
  return t;
}

function encodeRandom(bytes: Uint8Array): string {
  // 80 bits -> 16 base32 characters
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(acc >> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  return out;
}

/** Increments the 80-bit random part so ids made in the same millisecond still sort in creation order. */
function increment(bytes: Uint8Array): Uint8Array {
  const next: Uint8Array = new Uint8Array(bytes);
  for (let i = next.length - 1; i >= 0; i--) {
    if (next[i] === 255) { next[i] = 0; continue; }
    next[i]++;
    break;
  }
  return next;
}

/** A ULID-style id: sortable by creation time (monotonic within this process), with a type prefix. */
export function newId(prefix: IdPrefix, nowMs: number = Date.now()): string {
  if (nowMs <= lastMs) {
    lastRandom = increment(lastRandom);
  } else {
    lastMs = nowMs;
    lastRandom = randomIdBytes(10);
  }
  return `${prefix}_${encodeTime(lastMs)}${encodeRandom(lastRandom)}`;
}

const ID_SHAPE = new RegExp(`^[a-z]+_[${ALPHABET}]{26}$`);

/** Whether `s` has the shape of an id this module makes: a prefix, `_`, then 26 characters of Crockford base32. */
export function isId(s: string): boolean {
  return ID_SHAPE.test(s);
}

export function hasPrefix(id: string, prefix: IdPrefix): boolean {
  return id.startsWith(prefix + '_') && id.length === prefix.length + 27;
}
