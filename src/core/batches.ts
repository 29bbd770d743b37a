/**
 * Group commit's scheduling. What is pushed during one turn of the event loop runs as one batch
 * (up to maxBatch items), and what arrives while batches run waits for the next; at most
 * `parallel` batches run at once. `run` settles its items itself and does not throw.
 */
export class Batches<T> {
  private queue: T[] = [];
  private running = 0;
  private scheduled = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly run: (batch: T[]) => Promise<void>, private readonly opts: { parallel: number; maxBatch: number }) {}

  push(item: T): void {
    this.queue.push(item);
    this.schedule();
  }

  /** Resolves when everything pushed so far has run. */
  idle(): Promise<void> {
    if (!this.running && !this.scheduled && !this.queue.length) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private schedule(): void {
    if (this.scheduled || this.running >= this.opts.parallel || !this.queue.length) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const batch = this.queue.splice(0, this.opts.maxBatch);
      this.running++;
      void this.run(batch).finally(() => {
        this.running--;
        this.schedule();
        if (!this.running && !this.scheduled && !this.queue.length) for (const w of this.idleWaiters.splice(0)) w();
      });
      this.schedule();
    });
  }
}
