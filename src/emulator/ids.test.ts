import { describe, expect, it } from 'vitest';
import { messageId, randomHex, requestId } from './ids.js';

describe('emulator ids', () => {
  it('stamps request ids with the UTC second of the given time, then 18 upper-case hex digits', () => {
    const a = requestId(Date.UTC(2024, 10, 28, 12, 34, 56, 789));
    const b = requestId(Date.UTC(2024, 10, 28, 12, 34, 57, 1));
    expect(a).toMatch(/^20241128123456[0-9A-F]{18}$/);
    expect(b).toMatch(/^20241128123457[0-9A-F]{18}$/);
    expect(requestId(Date.UTC(2024, 10, 28, 12, 34, 56, 0)).slice(0, 14)).toBe('20241128123456');
  });

  it('draws random hex across pool refills without repeating itself', () => {
    const seen = new Set<string>();
    // 12 bytes each, 2000 draws: about six refills of the 4 KB pool.
    for (let i = 0; i < 2000; i++) {
      const id = randomHex(12);
      expect(id).toMatch(/^[0-9a-f]{24}$/);
      seen.add(id);
    }
    expect(seen.size).toBe(2000);
  });

  it('hands out increasing 19-digit message ids', () => {
    const ids = Array.from({ length: 1000 }, () => BigInt(messageId()));
    for (let i = 1; i < ids.length; i++) expect(ids[i]! > ids[i - 1]!).toBe(true);
    expect(String(ids[0]).length).toBe(19);
  });
});
