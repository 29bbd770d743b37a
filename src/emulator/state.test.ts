import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { storeMedia } from './directory.js';
import { MEDIA_TTL_MS } from './media.js';
import { emptyState, StateStore, writeDelay } from './state.js';

const silent = pino({ level: 'silent' });
const dirs: string[] = [];
const scratch = () => { const d = mkdtempSync(join(tmpdir(), 'emu-state-')); dirs.push(d); return join(d, 'state.json'); };
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }); });

describe('emulator state writes', () => {
  it('wait the debounce, or 20 times the last serialization when that is longer, at most a minute', () => {
    expect(writeDelay(150, 0)).toBe(150);
    expect(writeDelay(150, 5)).toBe(150);
    expect(writeDelay(150, 50)).toBe(1000);
    expect(writeDelay(150, 157)).toBe(3140);
    expect(writeDelay(150, 10_000)).toBe(60_000);
    expect(writeDelay(150, 50, 0)).toBe(150);
  });

  it('writes a change to the file after the debounce', async () => {
    const path = scratch();
    const store = new StateStore(path, silent, 10);
    store.data.webhooks['DIRECT_MESSAGE'] = { callback_url: 'http://127.0.0.1:1/hook' };
    store.changed();
    for (let i = 0; i < 200 && !existsSync(path); i++) await new Promise((r) => setTimeout(r, 25));
    expect(JSON.parse(readFileSync(path, 'utf8')).webhooks).toEqual({ DIRECT_MESSAGE: { callback_url: 'http://127.0.0.1:1/hook' } });
    expect(new StateStore(path, silent).data.webhooks['DIRECT_MESSAGE']?.callback_url).toBe('http://127.0.0.1:1/hook');
  });

  it('after a slow serialization holds the next write back, and flush still writes at once', async () => {
    const path = scratch();
    const store = new StateStore(path, silent, 10);
    store.lastSerializeMs = 1000; // the next write waits 20 s
    store.data.webhooks['DIRECT_MESSAGE'] = { callback_url: 'http://127.0.0.1:1/hook' };
    store.changed();
    await new Promise((r) => setTimeout(r, 300));
    expect(existsSync(path)).toBe(false);
    await store.flush();
    expect(JSON.parse(readFileSync(path, 'utf8')).webhooks['DIRECT_MESSAGE'].callback_url).toBe('http://127.0.0.1:1/hook');
  });

  it('writes a reset state after the debounce, not after the gap the old state set', async () => {
    const path = scratch();
    const store = new StateStore(path, silent, 10);
    store.lastSerializeMs = 1000;
    store.data.webhooks['DIRECT_MESSAGE'] = { callback_url: 'http://127.0.0.1:1/hook' };
    store.changed();
    store.reset();
    for (let i = 0; i < 200 && !existsSync(path); i++) await new Promise((r) => setTimeout(r, 25));
    expect(JSON.parse(readFileSync(path, 'utf8')).webhooks).toEqual({});
  });
});

describe('emulator media records', () => {
  it('live 30 days, and those past theirs are dropped when another is stored', () => {
    const data = emptyState();
    const media = { business_id: 'b', mime: 'image/png', data_b64: 'AA==' };
    const old = storeMedia(data, media, 0);
    const kept = storeMedia(data, media, 10);
    expect(data.media[old]).toMatchObject({ media_id: old, ...media, created_at: 0, expires_at: MEDIA_TTL_MS });
    const added = storeMedia(data, media, MEDIA_TTL_MS);
    expect(Object.keys(data.media).sort()).toEqual([kept, added].sort());
  });
});
