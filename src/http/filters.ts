import { invalid } from '../core/errors.js';
import { hasPrefix, isId, type IdPrefix } from '../core/ids.js';

/**
 * A list filter that names one of our ids. A value of another shape can match nothing, so it is a
 * typo (`account_id=sandbox_shop`), refused rather than answered with an empty list that looks
 * like "no results". An empty value counts as not given, as HTML forms send it.
 */
export function idFilter(value: string | undefined, prefix: IdPrefix, field: string, expected = `an id starting with ${prefix}_`): string | undefined {
  if (!value) return undefined;
  if (!isId(value) || !hasPrefix(value, prefix)) throw invalid(`${field} must be ${expected} (got "${value.slice(0, 60)}")`, { field });
  return value;
}
