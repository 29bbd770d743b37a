import { tokensStored } from './audit.js';
import type { TestGateway } from './gateway.js';

/** Helpers for the accounts tests: a redirect-following browser, events, waits, emulator stats. */

import { waitFor } from './wait.js';

export { waitFor };

export interface Hop { url: string; status: number; location: string | null; body: string; contentType: string }

/**
 * A minimal browser: follows redirects (absolute or relative Location) hop by hop, and on TikTok's
 * consent page clicks the "Authorize as @username" link, as a person would.
 */
export async function browse(start: string, opts: { headers?: Record<string, string>; authorizeAs?: string; cancel?: boolean; maxHops?: number } = {}): Promise<Hop[]> {
  const hops: Hop[] = [];
  let url = start;
  let headers = opts.headers ?? {};
  for (let i = 0; i < (opts.maxHops ?? 10); i++) {
    const res = await fetch(url, { redirect: 'manual', headers });
    const body = await res.text();
    const location = res.headers.get('location');
    hops.push({ url, status: res.status, location, body, contentType: res.headers.get('content-type') ?? '' });
    headers = {}; // credentials go to dmgate only, never along the redirects
    if (location && res.status >= 300 && res.status < 400) { url = new URL(location, url).toString(); continue; }
    const links = [...body.matchAll(/<a[^>]*href="([^"]+)"[^>]*>([\s\S]*?)<\/a>/g)].map((m) => ({ href: m[1].replace(/&amp;/g, '&'), text: m[2].replace(/<[^>]+>/g, '') }));
    const pick = opts.cancel ? links.find((l) => /cancel/i.test(l.text))
      : opts.authorizeAs ? links.find((l) => l.text.includes(`@${opts.authorizeAs}`)) : undefined;
    if (!pick) return hops;
    url = new URL(pick.href, url).toString();
  }
  return hops;
}

export async function storedEvents(gw: TestGateway, type?: string): Promise<Record<string, any>[]> {
  let q = gw.server.ctx.database.db.selectFrom('events').select(['payload']).orderBy('seq');
  if (type) q = q.where('type', '=', type);
  return (await q.execute()).map((r) => JSON.parse(r.payload) as Record<string, any>);
}

export async function emulatorStats(gw: TestGateway): Promise<{ refresh_calls: Record<string, number>; [k: string]: any }> {
  return (await fetch(`${gw.emulatorUrl}/_control/stats`)).json() as Promise<any>;
}

export const refreshCalls = async (gw: TestGateway, business: string) => (await emulatorStats(gw)).refresh_calls[business] ?? 0;

/** Every access and refresh token value dmgate has stored so far (decrypted), to look for leaks. */
export const storedTokens = (gw: TestGateway): Promise<string[]> => tokensStored(gw.server);

export async function account(gw: TestGateway, id: string): Promise<Record<string, any>> {
  const res = await gw.api('GET', `/v1/accounts/${id}`);
  if (res.status !== 200) throw new Error(`GET account ${id}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

export async function waitBackfill(gw: TestGateway, id: string, after?: string, timeoutMs = 40000): Promise<Record<string, any>> {
  return waitFor(`the backfill of ${id}`, async () => {
    const a = await account(gw, id);
    const b = a.backfill;
    if (!b || (b.status !== 'done' && b.status !== 'failed')) return null;
    if (after && b.requested_at <= after) return null;
    return b;
  }, timeoutMs);
}
