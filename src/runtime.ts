import type { AppContext } from './context.js';
import type { Role } from './config.js';
import { startDeliveryWorker } from './webhooks/worker.js';
import { startProcessor } from './ingest/processor.js';
import { startSender } from './messaging/sender.js';
import { startTokenKeeper } from './accounts/token-keeper.js';
import { startBackfillWorker } from './accounts/backfill.js';

export interface Worker { stop(): Promise<void> }

/** The background loops a role runs. `api` serves HTTP only; `worker` runs only these. */
export function startWorkers(ctx: AppContext, role: Role): Worker[] {
  if (role === 'api') return [];
  return [startProcessor(ctx), startDeliveryWorker(ctx), startSender(ctx), startTokenKeeper(ctx), startBackfillWorker(ctx)];
}

export async function stopWorkers(workers: Worker[]): Promise<void> {
  await Promise.all(workers.map((w) => w.stop()));
}
