import { describe, expect, it } from 'vitest';
import { announceEvents, tally } from './outbox.js';
import type { StoredEvent } from './types.js';

const stored = (deliveries: number): StoredEvent => ({ id: 'evt_1', seq: 1, event: 'message.sent', payload: '{}', conversation_id: null, deliveries });

describe('announceEvents', () => {
  const announced = (events: StoredEvent[]) => {
    const topics: string[] = [];
    announceEvents({ notify: (t) => topics.push(t) }, tally(events));
    return topics;
  };

  it('wakes the delivery worker only when something is to be delivered', () => {
    expect(announced([stored(0), stored(0)])).toEqual(['events']);
    expect(announced([stored(0), stored(2)])).toEqual(['deliveries', 'events']);
  });

  it('says nothing when nothing was appended', () => {
    expect(announced([])).toEqual([]);
  });
});
