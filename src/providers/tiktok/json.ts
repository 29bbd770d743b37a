/**
 * JSON from TikTok with every U+0000 in its strings replaced by U+FFFD. PostgreSQL's text cannot
 * hold U+0000 (the write fails, so a customer message carrying one could never be stored), and
 * both databases must store the same thing. JSON always writes U+0000 as `\u0000`: text without
 * that sequence is parsed as it is.
 */
export function parseTiktokJson(text: string): unknown {
  return text.includes('\\u0000') ? JSON.parse(text, withoutNul) : JSON.parse(text);
}

const withoutNul = (_key: string, value: unknown) =>
  (typeof value === 'string' && value.includes('\u0000') ? value.replaceAll('\u0000', '\uFFFD') : value);
