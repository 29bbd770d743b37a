import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type BetterSqlite3 from 'better-sqlite3';

/**
 * SQLite checkpoints on a worker thread.
 *
 * By default the commit that takes the WAL past 1,000 pages copies them into the database file and
 * syncs it, on the event loop: measured here, checkpoints were more than half of what commits cost
 * the main thread. A busy process instead turns automatic checkpoints off and lets a second
 * connection, on its own thread, run PASSIVE checkpoints (they never wait for, nor block, the
 * writer) every CHECKPOINT_EVERY_MS. A process that has written little never starts the thread.
 *
 * Busy means many commits, or a WAL that has grown to a quarter of the automatic checkpoint's
 * 1,000 pages: group commit makes a busy process's commits few and large (bench:outbound's drain
 * sends 20,000 replies in under 500 commits), and counting commits alone left its checkpoints on
 * the event loop for the whole drain: 8 % of the main thread's CPU samples (perf).
 */
const START_AFTER_COMMITS = 500;
const START_AT_WAL_BYTES = 1024 * 1024;
const CHECKPOINT_EVERY_MS = 250;

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true });
const timer = setInterval(() => {
  try { db.pragma('wal_checkpoint(PASSIVE)'); } catch (err) { parentPort.postMessage({ error: String(err && err.message || err) }); }
}, workerData.everyMs);
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

export class Checkpointer {
  private worker: Worker | null = null;
  private commits = 0;
  private off = false;

  constructor(private readonly sqlite: BetterSqlite3.Database, private readonly file: string, private readonly onError: (message: string) => void) {}

  /** Counts a commit; the worker starts once the process has shown it is busy. */
  committed(): void {
    if (this.worker || this.off) return;
    if (++this.commits < START_AFTER_COMMITS && (statSync(`${this.file}-wal`, { throwIfNoEntry: false })?.size ?? 0) < START_AT_WAL_BYTES) return;
    try {
      const driver = createRequire(import.meta.url).resolve('better-sqlite3');
      const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { driver, file: this.file, everyMs: CHECKPOINT_EVERY_MS } });
      worker.unref();
      worker.on('message', (m: { error?: string }) => { if (m.error) this.onError(m.error); });
      worker.on('error', (err) => this.fallBack(err.message));
      worker.on('exit', () => { if (this.worker === worker) this.fallBack('checkpoint thread exited'); });
      this.worker = worker;
      this.sqlite.pragma('wal_autocheckpoint = 0');
    } catch (err) {
      this.fallBack(err instanceof Error ? err.message : String(err));
    }
  }

  /** Stops the thread (its connection closes first, so the main one can checkpoint and clean up on close). */
  async close(): Promise<void> {
    this.off = true;
    const worker = this.worker;
    this.worker = null;
    if (!worker) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.postMessage('stop');
    const timeout = setTimeout(() => void worker.terminate(), 5000);
    await exited;
    clearTimeout(timeout);
  }

  private fallBack(message: string): void {
    this.worker = null;
    this.off = true;
    this.onError(message);
    try { this.sqlite.pragma('wal_autocheckpoint = 1000'); } catch { /* closed meanwhile */ }
  }
}
