import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * SSRF guard for subscriber URLs: at save time the host (or what it resolves to) must be a public
 * unicast address, and at connect time `guardedLookup` refuses any private answer, so a DNS name
 * that later rebinds to 127.0.0.1 or the cloud metadata address cannot be reached either.
 * Everything is refused unless ipaddr.js classifies it as plain `unicast`: loopback, RFC 1918,
 * link-local (169.254.169.254 metadata), CGNAT (100.100.100.200 metadata), unique-local
 * (fd00:ec2::254 metadata), multicast, unspecified, broadcast, reserved and documentation ranges.
 * IPv4-mapped, NAT64 (64:ff9b::/96) and 6to4 addresses are judged by the IPv4 address they carry.
 */
const BLOCKED_NAMES = new Set(['localhost', 'metadata', 'metadata.google.internal', 'metadata.goog', 'instance-data']);

export class UnsafeAddressError extends Error {
  readonly code = 'EUNSAFEADDRESS';
}

export function isPublicAddress(address: string): boolean {
  let ip: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    ip = ipaddr.parse(address.replace(/^\[|\]$/g, '').replace(/%.*$/, ''));
  } catch {
    return false;
  }
  if (ip.kind() === 'ipv6') {
    const v6 = ip as ipaddr.IPv6;
    const range = v6.range();
    if (range === 'ipv4Mapped') return isPublicAddress(v6.toIPv4Address().toString());
    const parts = v6.parts;
    if (range === 'rfc6052' && parts[0] === 0x64 && parts[1] === 0xff9b && parts[2] === 0) {
      return isPublicAddress(`${parts[6] >> 8}.${parts[6] & 255}.${parts[7] >> 8}.${parts[7] & 255}`);
    }
    if (range === '6to4') return isPublicAddress(`${parts[1] >> 8}.${parts[1] & 255}.${parts[2] >> 8}.${parts[2] & 255}`);
    return range === 'unicast';
  }
  return ip.range() === 'unicast';
}

/** Hostname of a URL without IPv6 brackets, lower case, without a trailing dot. */
export function urlHost(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase();
}

function blockedName(host: string): boolean {
  return BLOCKED_NAMES.has(host) || host.endsWith('.localhost') || host.endsWith('.internal');
}

export type Resolver = (host: string) => Promise<string[]>;

const systemResolver: Resolver = (host) => new Promise((resolve, reject) => {
  dnsLookup(host, { all: true, verbatim: true }, (err, addresses) => (err ? reject(err) : resolve(addresses.map((a) => a.address))));
});

export interface UrlCheck { ok: true; url: URL }
export interface UrlRefusal { ok: false; reason: string }

/**
 * Validates a subscriber URL at save time: http(s), no private destination unless allowed. A name
 * that does not resolve (yet) is accepted: the connect-time guard still applies to it.
 */
export async function checkWebhookUrl(raw: string, allowPrivate: boolean, resolve: Resolver = systemResolver): Promise<UrlCheck | UrlRefusal> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, reason: 'url must be an absolute http(s) URL' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { ok: false, reason: 'url must use http or https' };
  if (!url.hostname) return { ok: false, reason: 'url has no host' };
  // The URL is shown in every answer about the endpoint, so a password in it would leak; the
  // signature is how a receiver knows a delivery is ours.
  if (url.username || url.password) return { ok: false, reason: 'url must not carry credentials (user:password@): verify the webhook-signature header instead' };
  if (allowPrivate) return { ok: true, url };
  const host = urlHost(url);
  if (isIP(host)) {
    return isPublicAddress(host) ? { ok: true, url } : { ok: false, reason: `url points at a private or reserved address (${host})` };
  }
  if (blockedName(host)) return { ok: false, reason: `url points at a private host (${host})` };
  let addresses: string[];
  try {
    addresses = await resolve(host);
  } catch {
    return { ok: true, url };
  }
  const bad = addresses.find((a) => !isPublicAddress(a));
  if (bad) return { ok: false, reason: `url host ${host} resolves to a private or reserved address (${bad})` };
  return { ok: true, url };
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for http.request / net.connect that refuses private answers (defeats DNS rebinding).
 * Handles both the single-address and the `all: true` forms Node's net uses.
 */
export function guardedLookup(hostname: string, options: LookupOptions | number | undefined, callback: LookupCallback): void {
  const opts: LookupOptions = typeof options === 'number' ? { family: options } : { ...(options ?? {}) };
  const host = hostname.replace(/\.$/, '').toLowerCase();
  if (blockedName(host)) {
    callback(new UnsafeAddressError(`refused to connect to ${hostname}: private host`), '', 4);
    return;
  }
  dnsLookup(hostname, { ...opts, all: true }, (err, addresses) => {
    if (err) { callback(err, '', 4); return; }
    const bad = addresses.find((a) => !isPublicAddress(a.address));
    if (bad || !addresses.length) {
      callback(new UnsafeAddressError(`refused to connect to ${hostname}: it resolves to a private or reserved address${bad ? ` (${bad.address})` : ''}`), '', 4);
      return;
    }
    if (opts.all) callback(null, addresses);
    else callback(null, addresses[0].address, addresses[0].family);
  });
}
