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
 * commits made during one sync share the next (group commit).
 *
 * The WAL file keeps its inode while any connection is open (SQLite removes it only when the last
 * one closes), so one descriptor, opened at the first sync (after a commit: the file exists), serves
 * for the life of the connection.
 */
export class WalSync {
  private fd: number | null = null;
  private running: Promise<void> | null = null;
  private queued: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly walPath: string) {}

  /** Resolves once everything written to the WAL before this call is on disk. */
  sync(): Promise<void> {
    if (this.queued) return this.queued;
    if (!this.running) return this.start();
    // The running sync may have started before this caller's write: it rides on the next one.
    this.queued = this.running.catch(() => undefined).then(() => {
      this.queued = null;
      return this.start();
    });
    return this.queued;
  }

  close(): void {
    this.closed = true;
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private start(): Promise<void> {
    const p: Promise<void> = new Promise<void>((resolve, reject) => {
      if (this.closed) { resolve(); return; }
      try {
        this.fd ??= openSync(this.walPath, 'r');
      } catch (err) {
        reject(err);
        return;
      }
      fdatasync(this.fd, (err) => (err ? reject(err) : resolve()));
    }).finally(() => {
      if (this.running === p) this.running = null;
    });
    this.running = p;
    return p;
  }
}
