import { randomFillSync } from 'node:crypto';

/**
 * Random bytes for ids, drawn from a pool refilled 4 KB at a time. Every HTTP request gets an id,
 * and the emulator makes a few per API call and per webhook push: one call into OpenSSL per id cost
 * more than making the rest of the id (a tenth of the emulator's CPU under load). Not for tokens or
 * secrets, which draw their own bytes.
 */
const pool = Buffer.allocUnsafe(4096);
let poolAt = pool.length;

/** Where `n` fresh bytes start in the pool (n ≤ 4096). */
function take(n: number): number {
  if (poolAt + n > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const from = poolAt;
  poolAt += n;
  return from;
}

/** `n` random bytes, a copy of their own. */
export function randomIdBytes(n: number): Uint8Array {
  const from = take(n);
  return new Uint8Array(pool.subarray(from, from + n));
}

/** `n` random bytes as lower-case hex. */
export function randomIdHex(n: number): string {
  const from = take(n);
  return pool.toString('hex', from, from + n);
}
