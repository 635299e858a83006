import { UnsupportedTokenizerError } from './errors.js';

/**
 * A tokenizer.json Split regex (Oniguruma syntax) as a JS RegExp with the u and g flags. The only
 * construct JS lacks here is the scoped case-insensitive group (?i:...), rewritten with explicit
 * letter classes; anything else unusual is refused rather than guessed.
 */
export function jsRegexFromPattern(pattern: string): RegExp {
  let out = '';
  let i = 0;
  while (i < pattern.length) {
    if (pattern.startsWith('(?i:', i)) {
      const end = pattern.indexOf(')', i);
      const body = pattern.slice(i + 4, end);
      if (end < 0 || /[\\[\]()]/.test(body)) throw new UnsupportedTokenizerError(`case-insensitive group in ${pattern}`);
      out += '(?:' + body.replace(/\p{L}/gu, (ch) => (ch.toLowerCase() === ch.toUpperCase() ? ch : `[${ch.toLowerCase()}${ch.toUpperCase()}]`)) + ')';
      i = end + 1;
    } else if (pattern[i] === '\\') {
      out += pattern.slice(i, i + 2);
      i += 2;
    } else if (pattern.startsWith('(?', i) && !pattern.startsWith('(?:', i) && !pattern.startsWith('(?=', i) && !pattern.startsWith('(?!', i)) {
      throw new UnsupportedTokenizerError(`regex construct at ${i} in ${pattern}`);
    } else {
      out += pattern[i];
      i += 1;
    }
  }
  try {
    return new RegExp(out, 'gu');
  } catch (err) {
    throw new UnsupportedTokenizerError(`regex ${pattern}: ${(err as Error).message}`);
  }
}
