import type { AppContext } from './context.js';
import type { Role } from './config.js';
import { startDeliveryWorker } from './webhooks/worker.js';
import { startProcessor } from './ingest/processor.js';
import { startSender } from './messaging/sender.js';
import { startTokenKeeper } from './accounts/token-keeper.js';
import { startBackfillWorker } from './accounts/backfill.js';
import { startRetention } from './retention.js';

export interface Worker { stop(): Promise<void> }

/** A background loop with the name a stuck shutdown reports it by. */
export interface NamedWorker { name: string; worker: Worker }

/** The background loops a role runs. `api` serves HTTP only; `worker` runs only these. */
export function startWorkers(ctx: AppContext, role: Role): NamedWorker[] {
  if (role === 'api') return [];
  return [
    { name: 'inbound processor', worker: startProcessor(ctx) },
    { name: 'webhook delivery', worker: startDeliveryWorker(ctx) },
    { name: 'sender', worker: startSender(ctx) },
    { name: 'token keeper', worker: startTokenKeeper(ctx) },
    { name: 'backfill', worker: startBackfillWorker(ctx) },
    { name: 'retention', worker: startRetention(ctx) },
  ];
}

/** Stops them all at once; `stopping` holds the names of those not stopped yet. */
export async function stopWorkers(workers: NamedWorker[], stopping = new Set<string>()): Promise<void> {
  await Promise.all(workers.map(async ({ name, worker }) => {
    stopping.add(name);
    await worker.stop();
    stopping.delete(name);
  }));
}
