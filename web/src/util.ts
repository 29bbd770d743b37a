import type { ContactSummary, Referral } from './types';

export function initials(name: string): string {
  const parts = name.replace(/^@/, '').split(/[\s._@-]+/).filter(Boolean);
  return ((parts[0]?.[0] ?? '?') + (parts[1]?.[0] ?? '')).toUpperCase();
}

export const contactName = (c: ContactSummary | { display_name: string | null; username: string | null }) =>
  c.display_name || (c.username ? '@' + c.username : 'TikTok user');

/** A stable, readable hue per id for avatar backgrounds (contrast-checked dark tones). */
export function hue(id: string): number {
  let h = 0;
  for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) % 360;
  return h;
}

export function referralSummary(r: Referral): string {
  if (r.source === 'ad') {
    const ad = r.ad ?? {};
    return `Came from the ad ${ad.ad_name ? `“${ad.ad_name}”` : ad.ad_id ? `#${ad.ad_id}` : ''}`.trim();
  }
  if (r.source === 'short_link') {
    const s = r.short_link ?? {};
    return `Came from a TikTok.me link${s.ref ? ` (ref ${s.ref})` : ''}`;
  }
  return `Came from ${r.source}`;
}

export const codePoints = (s: string) => {
  let n = 0;
  for (const _ of s) n++;
  return n;
};

export function cls(...parts: (string | false | null | undefined)[]): string {
  return parts.filter(Boolean).join(' ');
}
