/**
 * TikTok ids of replies whose send this process has recorded (committed), per business. TikTok
 * echoes every send as an `im_send_msg` webhook; for a reply already recorded under that id the
 * echo carries nothing new (the processor would find it and do nothing), so ingress acknowledges
 * it without storing it. Bounded: the oldest ids are forgotten first, and a forgotten (or another
 * process's) echo simply takes the ordinary path.
 */
export class RecentSends {
  private readonly keys = new Set<string>();

  constructor(private readonly max = 50_000) {}

  add(businessId: string, providerMessageId: string): void {
    this.keys.add(`${businessId}\n${providerMessageId}`);
    if (this.keys.size > this.max) this.keys.delete(this.keys.values().next().value!);
  }

  has(businessId: string, providerMessageId: string): boolean {
    return this.keys.has(`${businessId}\n${providerMessageId}`);
  }
}
