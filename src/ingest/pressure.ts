/**
 * Ingress pressure: how busy the webhook acknowledgement path is right now. Acknowledging is the
 * one thing TikTok waits for, so during a burst the asynchronous processing in the same process
 * steps back (it still gets a guaranteed minimum share and catches up afterwards).
 *
 * The signal is the arrival rate, not batch sizes: a short stall bunches a few webhooks into one
 * commit at any rate, and must not throttle processing of a steady, modest stream.
 */
export class IngressPressure {
  private windowStart = 0;
  private current = 0;
  private previous = 0;

  /**
   * @param busyPerSecond arrival rate above which ingress counts as busy. Low on purpose: processing
   * in the same thread suppresses the arrival rate it would measure, so the bar must be one a
   * starved ingress still clears; pressured processing still keeps up with ~1,000/s.
   */
  constructor(private readonly clock: () => number = Date.now, private readonly busyPerSecond = 300, private readonly windowMs = 100) {}

  private roll(now: number): void {
    if (now - this.windowStart < this.windowMs) return;
    this.previous = now - this.windowStart < 2 * this.windowMs ? this.current : 0;
    this.current = 0;
    this.windowStart = now - ((now - this.windowStart) % this.windowMs);
  }

  /** Called by the inbound log with the size of each group commit. */
  recordBatch(size: number): void {
    this.roll(this.clock());
    this.current += size;
  }

  get busy(): boolean {
    this.roll(this.clock());
    const limit = (this.busyPerSecond * this.windowMs) / 1000;
    return this.current >= limit || this.previous >= limit;
  }
}
