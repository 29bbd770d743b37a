/**
 * TikTok ids of replies this process has sent lately, per business, with whether their result is
 * recorded. TikTok echoes every send as an `im_send_msg` webhook; for a reply recorded under that
 * id the echo carries nothing new (the processor would find it and do nothing), so ingress
 * acknowledges it without storing it. An echo that arrives while the result is being written waits
 * for that write (milliseconds) instead of being stored and processed: it is acknowledged only once
 * the result is durable, and stored as usual when the write failed.
 *
 * Bounded: the oldest ids are forgotten first, and a forgotten (or another process's) echo simply
 * takes the ordinary path.
 */
export class RecentSends {
  /** true: recorded; a promise: being recorded (resolves whether it was). */
  private readonly keys = new Map<string, true | Promise<boolean>>();

  constructor(private readonly max = 50_000) {}

  /** The reply TikTok took under this id is being recorded; `written` settles when that is done. */
  recording(businessId: string, providerMessageId: string, written: Promise<unknown>): void {
    const key = `${businessId}\n${providerMessageId}`;
    const settled = written.then(() => true, () => false);
    this.set(key, settled);
    void settled.then((ok) => {
      if (this.keys.get(key) !== settled) return;
      if (ok) this.keys.set(key, true);
      else this.keys.delete(key);
    });
  }

  /** Whether the send under this id is recorded: true, false, or a promise while it is being written. */
  recorded(businessId: string, providerMessageId: string): boolean | Promise<boolean> {
    return this.keys.get(`${businessId}\n${providerMessageId}`) ?? false;
  }

  private set(key: string, value: true | Promise<boolean>): void {
    this.keys.delete(key);
    this.keys.set(key, value);
    if (this.keys.size > this.max) this.keys.delete(this.keys.keys().next().value!);
  }
}
