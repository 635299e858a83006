import { UnsupportedTokenizerError } from './errors.js';

/** Escapes whose meaning differs between Oniguruma (what the Rust tokenizers use) and JS. */
const ESCAPES: Record<string, string> = {
  // JS \s includes U+FEFF and misses U+0085; Oniguruma's is Unicode White_Space.
  s: '\\p{White_Space}',
  S: '\\P{White_Space}',
  d: '\\p{Nd}',
  D: '\\P{Nd}',
};
/** Escapes that would need more care than these patterns have ever needed: refused, never guessed. */
const UNSUPPORTED_ESCAPES = new Set(['w', 'W', 'b', 'B', 'A', 'z', 'Z', 'h', 'H', 'G', 'K', 'R', 'X']);

/**
 * A tokenizer.json Split regex (Oniguruma syntax) as a JS RegExp with the u and g flags, with
 * Oniguruma's meaning: \s, \S, \d, \D are rewritten as Unicode properties (in and out of classes),
 * and the scoped case-insensitive group (?i:...) gets explicit letter classes. Anything else unusual
 * is refused rather than guessed.
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
      const escaped = pattern[i + 1] ?? '';
      if (UNSUPPORTED_ESCAPES.has(escaped)) throw new UnsupportedTokenizerError(`regex escape \\${escaped} in ${pattern}`);
      out += ESCAPES[escaped] ?? pattern.slice(i, i + 2);
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
