import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.js';

describe('DMGATE_TRUST_PROXY', () => {
  const trust = (raw?: string) => loadConfig({ DMGATE_TRUST_PROXY: raw }).trustProxy;

  it('believes forwarding headers from this host and private networks by default, not from the internet', () => {
    expect(trust()).toEqual(['loopback', 'linklocal', 'uniquelocal']);
  });

  it('takes all, none, or a list of addresses, ranges and presets', () => {
    expect(trust('true')).toBe(true);
    expect(trust('0')).toBe(false);
    expect(trust('none')).toBe(false);
    expect(trust('10.0.0.5, 192.168.0.0/16,loopback,::1,fd00::/8')).toEqual(['10.0.0.5', '192.168.0.0/16', 'loopback', '::1', 'fd00::/8']);
  });

  it('refuses anything else, naming the bad entries', () => {
    expect(() => trust('loopbak')).toThrow(ConfigError);
    expect(() => trust('10.0.0.0/8,proxy.example.com')).toThrow(/proxy\.example\.com/);
  });
});
