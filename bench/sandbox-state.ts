/**
 * npm run bench:sandbox-state — what the emulator's state file costs the event loop it runs on.
 *
 * In sandbox mode the emulator runs inside the gateway's process and, after changes, writes its
 * whole state (businesses, conversations with up to 500 messages each, every send) as one JSON
 * file; JSON.stringify runs on the event loop that also serves the gateway's API. The state only
 * grows while the sandbox is used.
 *
 * For states of 10,000 and 100,000 messages, a change every 5 ms (a message and its send record,
 * 200 per second) for BENCH_DURATION_S seconds (6), twice in the same run: with a fixed 150 ms
 * debounce between writes (the baseline, as before) and with the emulator's write gap (the next
 * write waits at least WRITE_GAP_FACTOR times as long as the last serialization took). Prints the
 * writes, the time spent serializing and its share of the run, the event loop's delay p99 and
 * max, and the ratios.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pino } from 'pino';
import { StateStore, WRITE_GAP_FACTOR, type ConversationRec, type MessageRec, type StateData } from '../src/emulator/state.js';

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 6);
const CHANGE_EVERY_MS = 5;
const PER_CONVERSATION = 100;
const BUSINESS = '-000pcMJDSDHK-UvK012b10KKXmCvWmVF8o';
const TEXT = { body: 'Thanks for your order! It ships tomorrow.' };

function message(conversationId: string, n: number, direction: MessageRec['direction']): MessageRec {
  return { message_id: String(7412345678901234567n + BigInt(n)), conversation_id: conversationId, direction, source: 'API', type: 'text', timestamp: 1_733_460_000_000 + n, text: TEXT };
}

function conversation(i: number): ConversationRec {
  const id = `u5NkbnslAg+pOelv${String(i).padStart(8, '0')}w=`;
  return {
    conversation_id: id, business_id: BUSINESS, customer_id: `-000customer${i}`, created_at: 0, update_time: 0, last_customer_at: 0,
    sent_since: 0, business_replied: true, last_read_at: null, referrals: { ad: [], short_link: [] }, messages: [],
  };
}

/** A state of `messages` messages, half of them sends (each with its record in `sent`). */
function stateOf(messages: number, into: StateData): void {
  for (let i = 0, n = 0; n < messages; i++) {
    const c = conversation(i);
    into.conversations[c.conversation_id] = c;
    for (let j = 0; j < PER_CONVERSATION && n < messages; j++, n++) addMessage(into, c, n, j % 2 ? 'outbound' : 'inbound');
  }
}

function addMessage(data: StateData, c: ConversationRec, n: number, direction: MessageRec['direction']): void {
  const m = message(c.conversation_id, n, direction);
  c.messages.push(m);
  if (direction === 'outbound') {
    data.sent.push({
      message_id: m.message_id, conversation_id: c.conversation_id, business_id: BUSINESS, business_username: 'shop', customer_id: c.customer_id,
      message_type: 'TEXT', text: TEXT, image: null, share_post: null, template: null, referenced_message_info: null, timestamp: m.timestamp,
    });
  }
}

interface Figures { writes: number; serializeMs: number; lastMs: number; delayP99: number; delayMax: number }

async function run(messages: number, gapFactor: number): Promise<Figures> {
  const dir = mkdtempSync(join(tmpdir(), 'dmgate-bench-state-'));
  const store = new StateStore(join(dir, 'state.json'), pino({ level: 'silent' }), 150, gapFactor);
  stateOf(messages, store.data);
  const convs = Object.values(store.data.conversations);
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  const started = performance.now();
  let n = messages;
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      addMessage(store.data, convs[n % convs.length]!, n, 'outbound');
      n++;
      store.changed();
      if (performance.now() - started >= DURATION_S * 1000) { clearInterval(tick); resolve(); }
    }, CHANGE_EVERY_MS);
  });
  delay.disable();
  const figures = { writes: store.written.count, serializeMs: store.written.serializeMs, lastMs: store.lastSerializeMs, delayP99: delay.percentile(99) / 1e6, delayMax: delay.max / 1e6 };
  await store.flush();
  rmSync(dir, { recursive: true, force: true });
  return figures;
}

const fmt = (n: number, d = 1) => n.toFixed(d);
const line = (label: string, f: Figures) =>
  `  ${label}: ${f.writes} write${f.writes === 1 ? '' : 's'} (one serialization ${fmt(f.lastMs)} ms), ${fmt(f.serializeMs / 1000, 2)} s serializing = ${fmt(100 * f.serializeMs / (DURATION_S * 1000))} % of the ${DURATION_S} s; event loop delay p99 ${fmt(f.delayP99)} ms, max ${fmt(f.delayMax)} ms`;

for (const messages of [10_000, 100_000]) {
  const base = await run(messages, 0);
  const gap = await run(messages, WRITE_GAP_FACTOR);
  console.log(`state of ${messages.toLocaleString('en')} messages, a change every ${CHANGE_EVERY_MS} ms:`);
  console.log(line('fixed 150 ms debounce (baseline)', base));
  console.log(line(`write gap ≥ ${WRITE_GAP_FACTOR} × the last serialization`, gap));
  console.log(`  time serializing: ${fmt(gap.serializeMs / base.serializeMs, 3)} of the baseline's; event loop delay p99: ${fmt(gap.delayP99 / base.delayP99, 3)} of the baseline's`);
}
