import { describe, expect, it } from 'vitest';
import { messageId, requestId } from './ids.js';

describe('emulator ids', () => {
  it('stamps request ids with the UTC second of the given time, then 18 upper-case hex digits', () => {
    const a = requestId(Date.UTC(2024, 10, 28, 12, 34, 56, 789));
    const b = requestId(Date.UTC(2024, 10, 28, 12, 34, 57, 1));
    expect(a).toMatch(/^20241128123456[0-9A-F]{18}$/);
    expect(b).toMatch(/^20241128123457[0-9A-F]{18}$/);
    expect(requestId(Date.UTC(2024, 10, 28, 12, 34, 56, 0)).slice(0, 14)).toBe('20241128123456');
  });

  it('hands out increasing 19-digit message ids', () => {
    const ids = Array.from({ length: 1000 }, () => BigInt(messageId()));
    for (let i = 1; i < ids.length; i++) expect(ids[i]! > ids[i - 1]!).toBe(true);
    expect(String(ids[0]).length).toBe(19);
  });
});
