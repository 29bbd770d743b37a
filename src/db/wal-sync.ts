import { closeSync, fdatasync, openSync } from 'node:fs';

/**
 * SQLite durability off the event loop.
 *
 * With `synchronous = FULL` every commit waits for the disk inside better-sqlite3's synchronous
 * call, so the whole process stops for each sync (about 1 ms here, several when the disk is
 * busy). Instead the connection runs with `synchronous = NORMAL` (a commit writes its WAL frames
 * without syncing; SQLite still syncs around checkpoints, so the file is never inconsistent) and
 * whoever acknowledges a commit first awaits `sync()`: an fdatasync of the WAL on libuv's thread
 * pool. Acknowledged still means on disk, as with FULL, while the event loop goes on serving;
 * commits made in one callback of the event loop (with the microtasks it queues) share one sync.
 * (Each writer batches its own commits besides: the inbound log, the outbound committer.)
 *
 * Measured here (bench:ingest, SQLite): throughput unchanged; webhook-to-subscriber p50 at
 * 200 DMs/s about 1.5 ms higher than with FULL (each commit's sync is a thread-pool round trip).
 * Waiting for a running sync to end before starting the next one cost twice that.
 *
 * The WAL file keeps its inode while any connection is open (SQLite removes it only when the last
 * one closes), so one descriptor, opened at the first sync (after a commit: the file exists), serves
 * for the life of the connection.
 */
export class WalSync {
  private fd: number | null = null;
  private next: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly walPath: string) {}

  /**
   * Resolves once everything written to the WAL before this call is on disk. Callers in the same
   * callback of the event loop share one sync (queued as a microtask: no later than the callback's
   * own work). Sharing a whole turn (setImmediate) was measured: a quarter fewer syncs and 5 % less
   * CPU per reply in a sending process, but every sync waits for the poll phase, and bench:ingest
   * lost throughput and latency. A sync already running may have started before the caller's write,
   * so a new one starts beside it rather than after it (the kernel overlaps them). Sharing a turn
   * only while a sync is running was measured too: in a sending process (bench:outbound, latency
   * phases, alternating with this code) CPU per reply fell 2-15 % and POST p99 moved within the
   * runs' noise, while bench:ingest's durable acceptance fell from 0.55 to 0.47 of bare node:http.
   */
  sync(): Promise<void> {
    this.next ??= new Promise<void>((resolve, reject) => {
      queueMicrotask(() => {
        this.next = null;
        if (this.closed) { resolve(); return; }
        try {
          this.fd ??= openSync(this.walPath, 'r');
        } catch (err) {
          reject(err);
          return;
        }
        fdatasync(this.fd, (err) => (err ? reject(err) : resolve()));
      });
    });
    return this.next;
  }

  close(): void {
    this.closed = true;
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
