import { describe, expect, it } from 'vitest';
import { ApiError } from '../core/errors.js';
import { checkImage, checkTemplate, checkText, codePoints, decodeBase64, imageType, matchTemplateAnswer, templateAsText } from './content.js';

const code = (fn: () => unknown) => {
  try { fn(); } catch (err) { return (err as ApiError).code; }
  return null;
};

describe('content rules', () => {
  it('counts text in code points (emoji are one), at most 6000', () => {
    expect(codePoints('a😀b')).toBe(3);
    expect(code(() => checkText('😀'.repeat(6000)))).toBeNull();
    expect(code(() => checkText('x'.repeat(6001)))).toBe('text_too_long');
    expect(code(() => checkText(' \n'))).toBe('invalid_request');
  });

  it('recognises JPG and PNG by their bytes only', () => {
    expect(imageType(Buffer.from([0xff, 0xd8, 0xff, 0xe0]))).toBe('image/jpeg');
    expect(imageType(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0]))).toBe('image/png');
    expect(imageType(Buffer.from('GIF89a'))).toBeNull();
    expect(code(() => checkImage(Buffer.from('GIF89a....')))).toBe('media_unsupported');
    expect(code(() => checkImage(Buffer.alloc(0)))).toBe('media_unsupported');
    const big = Buffer.alloc(3 * 1024 * 1024 + 1);
    big[0] = 0xff; big[1] = 0xd8; big[2] = 0xff;
    expect(code(() => checkImage(big))).toBe('media_too_large');
    expect(code(() => checkImage(big.subarray(0, 3 * 1024 * 1024)))).toBeNull();
  });

  it('decodes strict base64 (and data: URLs), refuses the rest', () => {
    expect(decodeBase64('aGVsbG8=')?.toString()).toBe('hello');
    expect(decodeBase64('data:image/png;base64,aGVsbG8=')?.toString()).toBe('hello');
    expect(decodeBase64('aGVs bG8=')?.toString()).toBe('hello');
    expect(decodeBase64('%%%')).toBeNull();
  });

  it('templates: limits, default ids, text rendering, answers', () => {
    const t = checkTemplate({ title: 'Pick a size', buttons: [{ title: 'Small' }, { title: 'Medium', id: 'm' }, { title: 'Large' }] });
    expect(t).toEqual({ type: 'QA_BUTTON_CARD', title: 'Pick a size', as_text: false, buttons: [{ title: 'Small', id: '1' }, { title: 'Medium', id: 'm' }, { title: 'Large', id: '3' }] });
    expect(templateAsText(t)).toBe('Pick a size\n1. Small\n2. Medium\n3. Large');
    expect(code(() => checkTemplate({ title: 'x'.repeat(41), buttons: [{ title: 'a' }] }))).toBe('template_invalid');
    expect(code(() => checkTemplate({ title: 'x', buttons: [] }))).toBe('template_invalid');
    expect(code(() => checkTemplate({ title: 'x', buttons: [{ title: 'a' }, { title: 'b' }, { title: 'c' }, { title: 'd' }] }))).toBe('template_invalid');
    expect(code(() => checkTemplate({ title: 'x', buttons: [{ title: 'y'.repeat(21) }] }))).toBe('template_invalid');
    expect(code(() => checkTemplate({ type: 'QA_LINK_CARD', title: 'x', buttons: [{ title: 'y'.repeat(40) }] }))).toBeNull();
    expect(code(() => checkTemplate({ title: 'x', buttons: [{ title: 'a', id: 'i'.repeat(41) }] }))).toBe('template_invalid');
    expect(code(() => checkTemplate({ title: 'x', buttons: [{ title: 'a', id: 'same' }, { title: 'b', id: 'same' }] }))).toBe('template_invalid');
    // Titles an answer could not tell apart (matchTemplateAnswer ignores case, spacing, trailing punctuation).
    expect(code(() => checkTemplate({ title: 'x', buttons: [{ title: 'Yes' }, { title: ' yes!' }] }))).toBe('template_invalid');
    expect(code(() => checkTemplate({ title: 'x', buttons: [{ title: 'Yes' }, { title: 'Yes please' }] }))).toBeNull();
    for (const [answer, index] of [['2', 2], ['2.', 2], ['#3', 3], ['(1)', 1], ['medium', 2], ['  LARGE! ', 3], ['option 1', 1]] as const) {
      expect(matchTemplateAnswer(t, answer)?.index, answer).toBe(index);
    }
    for (const answer of ['4', '0', 'huge', '', '12 please']) expect(matchTemplateAnswer(t, answer), answer).toBeNull();
  });
});
