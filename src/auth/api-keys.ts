import { randomBytes } from 'node:crypto';
import { sha256Hex } from '../core/crypto.js';
import { newId } from '../core/ids.js';
import type { Database } from '../db/database.js';

export interface CreatedKey { id: string; name: string; key: string; created_at: number }

/** What every API key starts with (a key without it is refused before any lookup). */
export const API_KEY_PREFIX = 'dmg_';

/** Keys are `dmg_` + 32 random bytes; only their sha256 is stored. */
export async function createApiKey(database: Database, name: string, nowMs = Date.now()): Promise<CreatedKey> {
  const key = API_KEY_PREFIX + randomBytes(32).toString('base64url');
  const id = newId('key', nowMs);
  await database.db.insertInto('api_keys').values({
    id, name, key_hash: sha256Hex(key), key_prefix: key.slice(0, 10), created_at: nowMs, last_used_at: null, revoked_at: null,
  }).execute();
  return { id, name, key, created_at: nowMs };
}

interface CachedKey { id: string; expires: number }

/** Looks keys up by hash with a short cache, so an API call costs no extra query on the hot path. */
export class ApiKeyVerifier {
  private readonly cache = new Map<string, CachedKey | null>();
  constructor(private readonly database: Database, private readonly ttlMs = 5000) {}

  async verify(key: string, nowMs = Date.now()): Promise<string | null> {
    if (!key.startsWith(API_KEY_PREFIX)) return null;
    const hash = sha256Hex(key);
    const hit = this.cache.get(hash);
    if (hit && hit.expires > nowMs) return hit.id;
    const row = await this.database.db.selectFrom('api_keys').select(['id']).where('key_hash', '=', hash)
      .where('revoked_at', 'is', null).executeTakeFirst();
    if (!row) { this.cache.delete(hash); return null; }
    if (this.cache.size > 10000) this.cache.clear();
    this.cache.set(hash, { id: row.id, expires: nowMs + this.ttlMs });
    if (!hit) {
      await this.database.db.updateTable('api_keys').set({ last_used_at: nowMs }).where('id', '=', row.id).execute();
    }
    return row.id;
  }

  forget(): void { this.cache.clear(); }
}
