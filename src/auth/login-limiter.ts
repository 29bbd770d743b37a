/**
 * Failed-login throttling: at most `perAccount` failures per (email, IP) and `perIp` failures per
 * IP (whatever the email: credential stuffing) within a sliding window. A success clears the
 * (email, IP) counter. Kept in memory: each API process counts on its own, which bounds guessing
 * to N × the limit for N processes.
 */
export interface LimiterOptions { windowMs: number; perAccount: number; perIp: number; maxKeys: number }

const DEFAULTS: LimiterOptions = { windowMs: 15 * 60 * 1000, perAccount: 5, perIp: 50, maxKeys: 50_000 };

export class LoginLimiter {
  private readonly failures = new Map<string, number[]>();
  private readonly opts: LimiterOptions;

  constructor(private readonly clock: () => number, opts: Partial<LimiterOptions> = {}) {
    this.opts = { ...DEFAULTS, ...opts };
  }

  private recent(key: string, now: number): number[] {
    const list = this.failures.get(key);
    if (!list) return [];
    const kept = list.filter((t) => t > now - this.opts.windowMs);
    if (kept.length) this.failures.set(key, kept); else this.failures.delete(key);
    return kept;
  }

  /** Seconds to wait before another attempt, or 0 when an attempt is allowed now. */
  retryAfter(email: string, ip: string): number {
    const now = this.clock();
    const waits: number[] = [];
    for (const [key, limit] of [[`a:${email}|${ip}`, this.opts.perAccount], [`i:${ip}`, this.opts.perIp]] as const) {
      const list = this.recent(key, now);
      if (list.length >= limit) waits.push(list[list.length - limit] + this.opts.windowMs - now);
    }
    return waits.length ? Math.max(1, Math.ceil(Math.max(...waits) / 1000)) : 0;
  }

  fail(email: string, ip: string): void {
    const now = this.clock();
    if (this.failures.size > this.opts.maxKeys) this.prune(now);
    for (const key of [`a:${email}|${ip}`, `i:${ip}`]) {
      const list = this.recent(key, now);
      list.push(now);
      this.failures.set(key, list.slice(-Math.max(this.opts.perAccount, this.opts.perIp)));
    }
  }

  succeed(email: string, ip: string): void {
    this.failures.delete(`a:${email}|${ip}`);
  }

  private prune(now: number): void {
    for (const key of [...this.failures.keys()]) this.recent(key, now);
    // Still too many (an attack from many addresses): forget the oldest half rather than grow.
    if (this.failures.size > this.opts.maxKeys) {
      const drop = [...this.failures.keys()].slice(0, Math.floor(this.failures.size / 2));
      for (const k of drop) this.failures.delete(k);
    }
  }
}
