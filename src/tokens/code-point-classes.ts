/**
 * The character classes the byte-level pre-tokenizer patterns test — \p{L}, \p{N} and \s (Unicode
 * White_Space, as pattern.ts rewrites it) — as table lookups. The tables are filled by asking the JS
 * regex engine about each code point, so they agree exactly with the RegExp path they replace.
 */

export const LETTER = 1;
export const NUMBER = 2;
export const WHITE_SPACE = 4;
/** Returned by classAt for a surrogate pair: the code point takes two code units. */
export const ASTRAL = 8;
/** Returned by classAt past the end of the text: no class, and not "other" either. */
export const END = 16;
/** In the BMP table only: look at the next code unit. */
const HIGH_SURROGATE = 32;
/** In the astral table only: the entry has been filled. */
const KNOWN = 128;

const letter = /^\p{L}$/u;
const number = /^\p{N}$/u;
const whiteSpace = /^\p{White_Space}$/u;

function classify(char: string): number {
  return (letter.test(char) ? LETTER : 0) | (number.test(char) ? NUMBER : 0) | (whiteSpace.test(char) ? WHITE_SPACE : 0);
}

/** The class of each BMP code unit; a lone surrogate is a code point of its own, in no class. */
const BMP_CLASSES = (() => {
  const table = new Uint8Array(0x10000);
  for (let unit = 0; unit < 0x10000; unit++) table[unit] = classify(String.fromCharCode(unit));
  table.fill(HIGH_SURROGATE, 0xd800, 0xdc00);
  return table;
})();

/** Astral code points are classified on first sight (a regex test each is too slow for all million up front). */
const astralClasses = new Uint8Array(0x100000);

function astralClass(codePoint: number): number {
  const index = codePoint - 0x10000;
  let entry = astralClasses[index]!;
  if (entry === 0) {
    const found = classify(String.fromCodePoint(codePoint));
    // The whitespace scans step one code unit at a time: true of Unicode so far, checked, not assumed.
    if (found & WHITE_SPACE) throw new Error(`astral White_Space U+${codePoint.toString(16)}`);
    entry = found | KNOWN;
    astralClasses[index] = entry;
  }
  return (entry & ~KNOWN) | ASTRAL;
}

/** The class bits of the code point starting at units[i]; END past the end. */
export function classAt(units: Uint16Array, i: number): number {
  if (i >= units.length) return END;
  const unit = units[i]!;
  const bmp = BMP_CLASSES[unit]!;
  if (bmp !== HIGH_SURROGATE) return bmp;
  const low = i + 1 < units.length ? units[i + 1]! : 0;
  return low >= 0xdc00 && low <= 0xdfff ? astralClass(((unit - 0xd800) << 10) + (low - 0xdc00) + 0x10000) : 0;
}

/** How many code units the code point with these class bits takes. */
export function widthOf(classBits: number): number {
  return classBits & ASTRAL ? 2 : 1;
}

/** Not a letter, number or white space: [^\s\p{L}\p{N}], and not past the end. */
export function isOther(classBits: number): boolean {
  return (classBits & (LETTER | NUMBER | WHITE_SPACE | END)) === 0;
}

/** The index after the run of code points from i whose class has any of the bits in `mask`. */
export function runEnd(units: Uint16Array, i: number, mask: number): number {
  const length = units.length;
  while (i < length) {
    // The common case, a BMP code point, without the call.
    const bits = BMP_CLASSES[units[i]!]!;
    if (bits & mask) {
      i++;
    } else if (bits === HIGH_SURROGATE && classAt(units, i) & mask) {
      i += 2;
    } else {
      return i;
    }
  }
  return i;
}

/** The index after the run of "other" code points (see isOther) from i. */
export function otherRunEnd(units: Uint16Array, i: number): number {
  const length = units.length;
  while (i < length) {
    const bits = BMP_CLASSES[units[i]!]!;
    if (bits === 0) {
      i++;
      continue;
    }
    if (bits !== HIGH_SURROGATE) return i;
    // An astral code point, or a lone surrogate (other, one unit wide).
    const pair = classAt(units, i);
    if (!isOther(pair)) return i;
    i += widthOf(pair);
  }
  return i;
}

/** The index after the run of white space from i (all of it is in the BMP: see astralClass). */
export function whiteSpaceRunEnd(units: Uint16Array, i: number): number {
  const length = units.length;
  while (i < length && BMP_CLASSES[units[i]!]! & WHITE_SPACE) i++;
  return i;
}
