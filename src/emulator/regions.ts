/**
 * Region rules the emulator applies. Regions are ISO 3166-1 alpha-2 codes, upper case.
 * "UK" is accepted as an alias of "GB" and "EU" as "some EU member state", because test
 * authors write them that way.
 */

/** EU member states (27). */
export const EU_MEMBER_STATES: readonly string[] = [
  'AT', 'BE', 'BG', 'HR', 'CY', 'CZ', 'DK', 'EE', 'FI', 'FR', 'DE', 'GR', 'HU', 'IE',
  'IT', 'LV', 'LT', 'LU', 'MT', 'NL', 'PL', 'PT', 'RO', 'SK', 'SI', 'ES', 'SE',
];

/**
 * Customers here produce `im_receive_msg_eu` (stripped payload) instead of `im_receive_msg`:
 * the EEA (EU + Iceland, Liechtenstein, Norway), Switzerland and the UK (tiktok-api.md §3.3).
 */
const STRIPPED_PAYLOAD_REGIONS = new Set([...EU_MEMBER_STATES, 'EU', 'IS', 'LI', 'NO', 'CH', 'GB']);

/**
 * Markets where DM images are unavailable (seed 001 "Unsupported Regions"): Australia, Colombia,
 * the European Union, India, Iran, Japan, Nigeria, North Korea, the Philippines, Russia,
 * South Korea, Turkey, Ukraine, the United Kingdom and the United States.
 */
const IMAGE_BLOCKED_REGIONS = new Set([
  'AU', 'CO', ...EU_MEMBER_STATES, 'EU', 'IN', 'IR', 'JP', 'NG', 'KP', 'PH', 'RU', 'KR', 'TR', 'UA', 'GB', 'US',
]);

export const DEFAULT_REGION = 'SG';

/** Upper-cases a region and maps the aliases; falls back to the default for empty input. */
export function normalizeRegion(region: unknown): string {
  if (typeof region !== 'string' || region.trim() === '') return DEFAULT_REGION;
  const r = region.trim().toUpperCase();
  return r === 'UK' ? 'GB' : r;
}

export function usesStrippedPayload(region: string): boolean {
  return STRIPPED_PAYLOAD_REGIONS.has(normalizeRegion(region));
}

export function blocksImages(region: string): boolean {
  return IMAGE_BLOCKED_REGIONS.has(normalizeRegion(region));
}
