import { describe, expect, it } from 'vitest';
import { parseTiktokJson } from './json.js';

describe('parseTiktokJson', () => {
  it('replaces U+0000 in strings at any depth with U+FFFD', () => {
    const text = JSON.stringify({ a: 'x\u0000y', list: [{ b: '\u0000' }], n: 1, t: true, none: null });
    expect(parseTiktokJson(text)).toEqual({ a: 'x\uFFFDy', list: [{ b: '\uFFFD' }], n: 1, t: true, none: null });
  });

  it('leaves a written backslash-u0000 (six characters, not the character) as it is', () => {
    const text = JSON.stringify({ a: 'C:\\u0000', b: 'plain' });
    expect(text).toContain('\\\\u0000');
    expect(parseTiktokJson(text)).toEqual({ a: 'C:\\u0000', b: 'plain' });
  });

  it('reaches U+0000 inside TikTok\'s content, a JSON string inside the envelope, when that is parsed in turn', () => {
    const envelope = parseTiktokJson(JSON.stringify({ event: 'im_receive_msg', content: JSON.stringify({ text: 'a\u0000b' }) })) as { content: string };
    expect(parseTiktokJson(envelope.content)).toEqual({ text: 'a\uFFFDb' });
  });

  it('throws on text that is not JSON, as JSON.parse does', () => {
    expect(() => parseTiktokJson('{')).toThrow(SyntaxError);
    expect(() => parseTiktokJson('{"\\u0000')).toThrow(SyntaxError);
  });
});
