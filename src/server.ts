import type { AddressInfo } from 'node:net';
import type { DestinationStream } from 'pino';
import type { Config, Role } from './config.js';
import { answering, buildApp, inProgress, type App } from './app.js';
import { closeContext, createContext, type AppContext } from './context.js';
import { startWorkers, stopWorkers } from './runtime.js';
import { startSandbox, type Sandbox } from './sandbox.js';
import { checkWebhookWiring } from './accounts/health.js';
import { checkAutovacuum } from './db/autovacuum-check.js';

export interface RunningServer {
  url: string;
  app: App;
  ctx: AppContext;
  sandbox: Sandbox | null;
  close(): Promise<void>;
  /** While close() runs: what it is waiting for (a shutdown that hangs names the culprit). */
  closing(): Promise<string | null>;
}

const IDLE_SWEEP_MS = 50;

export interface ServeOptions {
  role?: Role;
  logDestination?: DestinationStream;
  clock?: () => number;
}

/** Starts dmgate: database, HTTP, the role's workers, and sandbox wiring when in sandbox mode. */
export async function serve(config: Config, opts: ServeOptions = {}): Promise<RunningServer> {
  const role = opts.role ?? config.role;
  const ctx = await createContext({ ...config, role }, { logDestination: opts.logDestination, clock: opts.clock });
  await checkAutovacuum(ctx);
  const app = await buildApp(ctx);
  const sandbox = config.sandbox ? await startSandbox(ctx, app) : null;
  await app.listen({ port: config.port, host: config.host });
  const { port } = app.server.address() as AddressInfo;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  if (!config.publicUrl || config.port === 0) ctx.config.publicUrl = config.port === 0 ? url : config.publicUrl;
  const workers = startWorkers(ctx, role);
  if (sandbox) await sandbox.wire(ctx.config.publicUrl);
  // TikTok's DM webhook should point here: a warning naming the fix if not (never blocks the start).
  else void checkWebhookWiring(ctx).catch(() => undefined);
  let closed = false;
  let step: string | null = null;
  const stopping = new Set<string>();
  return {
    url, app, ctx, sandbox,
    async close() {
      if (closed) return;
      closed = true;
      step = 'workers';
      await stopWorkers(workers, stopping);
      step = 'HTTP server';
      // Node closes the idle keep-alive connections once, as closing starts. A connection whose
      // request was still being answered then stays open after its answer (until keepAliveTimeout,
      // 72 s) unless its client ends it; one holding a request that no handler has started (headers
      // still arriving) or a body left unread after an early answer is never idle. So: sweep idle
      // ones while requests are being answered, and once none is, close every connection (what a
      // client had only partly sent was never acknowledged: it sends it again).
      const sweep = setInterval(() => {
        if (answering(app) === 0) app.server.closeAllConnections();
        else app.server.closeIdleConnections();
      }, IDLE_SWEEP_MS);
      try {
        await app.close();
      } finally {
        clearInterval(sweep);
      }
      step = 'sandbox emulator';
      await sandbox?.close();
      step = 'database';
      await closeContext(ctx);
      step = null;
    },
    closing: async () => {
      if (step === 'workers') return `workers: ${[...stopping].join(', ')}`;
      if (step === 'HTTP server') return `HTTP server: ${await inProgress(app)}`;
      return step;
    },
  };
}
