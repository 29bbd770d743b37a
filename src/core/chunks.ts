/**
 * Items per statement where a list becomes bound parameters (an `in` list, a multi-row insert):
 * far under SQLite's 32,766 and PostgreSQL's 65,535 parameters, even at a dozen columns a row.
 */
export const LIST_CHUNK = 500;

/** `items` as consecutive slices of at most `size`, in order (none for an empty list). */
export function chunks<T>(items: readonly T[], size = LIST_CHUNK): T[][] {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`chunk size must be a positive integer, not ${size}`);
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
