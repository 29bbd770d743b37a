import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { Bus } from '../core/bus.js';
import { createLogger } from '../core/logger.js';
import { openDatabase, type Database } from '../db/database.js';
import type { AppContext } from '../context.js';
import { SseHub } from './hub.js';

function fakeResponse() {
  const chunks: string[] = [];
  const res = {
    chunks, writableEnded: false, destroyed: false, writableLength: 0, socket: null,
    write(s: string) { chunks.push(s); return true; },
    end() { this.writableEnded = true; },
    on() { return this; },
  };
  return res;
}
const ids = (chunks: string[]) => chunks.join('').split('\n').filter((l) => l.startsWith('id: ')).map((l) => l.slice(4));

let cleanup: (() => Promise<void>) | null = null;
afterEach(async () => { await cleanup?.(); cleanup = null; });

async function setup(): Promise<{ ctx: AppContext; database: Database; now: { ms: number } }> {
  const dir = mkdtempSync(join(tmpdir(), 'dmgate-hub-'));
  const database = await openDatabase({ dataDir: dir });
  const log = createLogger('silent');
  const now = { ms: 1_000_000 };
  const ctx = { database, log, bus: new Bus(log), clock: () => now.ms } as unknown as AppContext;
  cleanup = async () => { await database.close(); rmSync(dir, { recursive: true, force: true }); };
  return { ctx, database, now };
}

const insert = (database: Database, seq: number) => database.db.insertInto('events')
  .values({ seq, id: `evt_${seq}`, type: seq % 2 ? 'message.received' : 'message.sent', account_id: null, conversation_id: null, payload: `{"n":${seq}}`, created_at: 0 } as never)
  .execute();
const settle = () => new Promise((r) => setTimeout(r, 30));

describe('SseHub', () => {
  it('fans out each new row once, and late rows below the read position (commit-order gaps)', async () => {
    const { ctx, database, now } = await setup();
    const hub = new SseHub(ctx);
    await insert(database, 1);
    const res = fakeResponse();
    const client = await hub.add({ res: res as unknown as ServerResponse, types: null }, null);
    expect(client?.live).toBe(true);
    await insert(database, 2);
    await insert(database, 4); // 3 is taken but not committed yet
    ctx.bus.notify('events');
    await settle();
    expect(ids(res.chunks)).toEqual(['evt_2', 'evt_4']);
    await insert(database, 3);
    ctx.bus.notify('events');
    await settle();
    expect(ids(res.chunks)).toEqual(['evt_2', 'evt_4', 'evt_3']);
    ctx.bus.notify('events');
    await settle();
    expect(ids(res.chunks)).toEqual(['evt_2', 'evt_4', 'evt_3']);

    // A gap that never fills (rolled back) is given up after the grace period.
    await insert(database, 6);
    ctx.bus.notify('events');
    await settle();
    now.ms += 10_000;
    ctx.bus.notify('events');
    await settle();
    await insert(database, 5);
    ctx.bus.notify('events');
    await settle();
    expect(ids(res.chunks)).toEqual(['evt_2', 'evt_4', 'evt_3', 'evt_6']);
    hub.close();
    expect(res.writableEnded).toBe(true);
  });

  it('replays after a position, filters by type, and reads once per wake for all clients', async () => {
    const { ctx, database } = await setup();
    for (let i = 1; i <= 3; i++) await insert(database, i);
    const hub = new SseHub(ctx);
    const all = fakeResponse();
    const received = fakeResponse();
    await hub.add({ res: all as unknown as ServerResponse, types: null }, 1);
    await hub.add({ res: received as unknown as ServerResponse, types: new Set(['message.received']) }, 0);
    expect(ids(all.chunks)).toEqual(['evt_2', 'evt_3']);
    expect(ids(received.chunks)).toEqual(['evt_1', 'evt_3']);
    let reads = 0;
    const orig = database.db.selectFrom.bind(database.db);
    (database.db as { selectFrom: unknown }).selectFrom = ((t: never) => { reads++; return orig(t); }) as never;
    await insert(database, 4);
    await insert(database, 5);
    ctx.bus.notify('events');
    await settle();
    expect(reads).toBe(1);
    expect(ids(all.chunks)).toEqual(['evt_2', 'evt_3', 'evt_4', 'evt_5']);
    expect(ids(received.chunks)).toEqual(['evt_1', 'evt_3', 'evt_5']);
    hub.close();
  });
});
