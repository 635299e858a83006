import { titlecase } from './python-titlecase.js';

/**
 * Python's str semantics where JavaScript's differ. Whitespace is str.isspace(): unlike JavaScript's
 * trim() and \s it includes U+001C..U+001F and U+0085 and excludes U+FEFF. Lengths and indices count
 * code points, not UTF-16 units.
 */

// Every character for which Python's str.isspace() is true (all in the BMP).
const WHITESPACE_CLASS = '\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const WHITESPACE_UNITS = (() => {
  const table = new Uint8Array(0x3001);
  const whitespace = new RegExp(`[${WHITESPACE_CLASS}]`);
  for (let unit = 0; unit < table.length; unit++) table[unit] = whitespace.test(String.fromCharCode(unit)) ? 1 : 0;
  return table;
})();

/** str.isspace() for one UTF-16 unit (surrogates are never whitespace). */
export const isPythonSpace = (unit: number): boolean => WHITESPACE_UNITS[unit] === 1;

export type StripSide = 'both' | 'left' | 'right';

/** str.strip(chars), str.lstrip(chars), str.rstrip(chars); chars null strips whitespace. */
export function pythonStrip(text: string, chars: string | null = null, side: StripSide = 'both'): string {
  if (chars === null) {
    let start = 0;
    let end = text.length;
    if (side !== 'right') while (start < end && isPythonSpace(text.charCodeAt(start))) start++;
    if (side !== 'left') while (end > start && isPythonSpace(text.charCodeAt(end - 1))) end--;
    return text.slice(start, end);
  }
  const strippable = new Set(chars);
  const codePoints = Array.from(text);
  let start = 0;
  let end = codePoints.length;
  if (side !== 'right') while (start < end && strippable.has(codePoints[start]!)) start++;
  if (side !== 'left') while (end > start && strippable.has(codePoints[end - 1]!)) end--;
  return codePoints.slice(start, end).join('');
}

/** str.split(sep, maxsplit): sep null splits on runs of whitespace and drops empty strings. */
export function pythonSplit(text: string, sep: string | null = null, maxsplit = -1): string[] {
  const limit = maxsplit < 0 ? Infinity : maxsplit;
  if (sep === null) return splitOnWhitespace(text, limit);
  if (sep === '') throw new Error('empty separator');
  const parts: string[] = [];
  let from = 0;
  for (let at = text.indexOf(sep); at >= 0 && parts.length < limit; at = text.indexOf(sep, from)) {
    parts.push(text.slice(from, at));
    from = at + sep.length;
  }
  parts.push(text.slice(from));
  return parts;
}

function splitOnWhitespace(text: string, limit: number): string[] {
  const parts: string[] = [];
  for (let i = 0; ; ) {
    while (i < text.length && isPythonSpace(text.charCodeAt(i))) i++;
    if (i === text.length) return parts;
    if (parts.length === limit) {
      parts.push(text.slice(i));
      return parts;
    }
    const start = i;
    while (i < text.length && !isPythonSpace(text.charCodeAt(i))) i++;
    parts.push(text.slice(start, i));
  }
}

/** str.replace(old, new, count); a negative count replaces all. */
export function pythonReplace(text: string, old: string, replacement: string, count = -1): string {
  const limit = count < 0 ? Infinity : count;
  if (old === '') {
    // Python inserts the replacement before every code point and at the end.
    const codePoints = Array.from(text);
    let out = '';
    for (let i = 0; i <= codePoints.length; i++) out += (i < limit ? replacement : '') + (codePoints[i] ?? '');
    return out;
  }
  let out = '';
  let from = 0;
  for (let n = 0, at = text.indexOf(old); n < limit && at >= 0; n++, at = text.indexOf(old, from)) {
    out += text.slice(from, at) + replacement;
    from = at + old.length;
  }
  return out + text.slice(from);
}

/** str.startswith / str.endswith with optional start and end (code point indices, slice rules). */
export function pythonAffixMatch(text: string, affix: string, atEnd: boolean, start: number | null = null, end: number | null = null): boolean {
  if (start === null && end === null) return atEnd ? text.endsWith(affix) : text.startsWith(affix);
  const codePoints = Array.from(text);
  const affixLength = codePointLength(affix);
  const length = codePoints.length;
  const from = start === null ? 0 : start < 0 ? Math.max(start + length, 0) : start;
  const to = end === null || end > length ? length : end < 0 ? Math.max(end + length, 0) : end;
  if (to - affixLength < from) return false;
  const at = atEnd ? to - affixLength : from;
  return codePoints.slice(at, at + affixLength).join('') === affix;
}

/** len(str). */
export function codePointLength(text: string): number {
  let length = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0xdc00 || unit > 0xdfff || i === 0 || !isHighSurrogate(text.charCodeAt(i - 1))) length++;
  }
  return length;
}

const isHighSurrogate = (unit: number) => unit >= 0xd800 && unit <= 0xdbff;

/** str[index], or undefined out of range (Jinja's undefined). */
export function codePointAt(text: string, index: number): string | undefined {
  return Array.from(text).at(index);
}

/** str.title(): a character after a cased one is lowercased, any other is titlecased. */
export function pythonTitle(text: string): string {
  const codePoints = Array.from(text);
  let previousIsCased = false;
  return codePoints
    .map((char, i) => {
      const mapped = previousIsCased ? lowercaseAt(codePoints, i) : titlecase(char);
      previousIsCased = CASED.test(char);
      return mapped;
    })
    .join('');
}

/** str.capitalize() (Python 3.8+): the first character titlecased, the rest lowercased. */
export function pythonCapitalize(text: string): string {
  const codePoints = Array.from(text);
  return codePoints.map((char, i) => (i === 0 ? titlecase(char) : lowercaseAt(codePoints, i))).join('');
}

// Jinja2's title filter (not str.title()): words begin after runs of '-', '(', '{', '[', '<' or whitespace.
const JINJA_WORD_BEGINNING = new RegExp(`([-${WHITESPACE_CLASS}({\\[<]+)`, 'u');

/** Jinja2's `title` filter: each word's first character uppercased, the rest lowercased. */
export function jinjaTitle(text: string): string {
  return text
    .split(JINJA_WORD_BEGINNING)
    .filter((item) => item !== '')
    .map((item) => {
      const first = String.fromCodePoint(item.codePointAt(0)!);
      return first.toUpperCase() + item.slice(first.length).toLowerCase();
    })
    .join('');
}

const CASED = /\p{Cased}/u;
const CASE_IGNORABLE = /\p{Case_Ignorable}/u;

/** One code point lowercased in its context: only capital sigma depends on it (final ς or σ). */
function lowercaseAt(codePoints: readonly string[], i: number): string {
  const char = codePoints[i]!;
  if (char !== 'Σ') return char.toLowerCase();
  return isFinalSigma(codePoints, i) ? 'ς' : 'σ';
}

/** Unicode's Final_Sigma: a cased letter before (past case-ignorables), none after. */
function isFinalSigma(codePoints: readonly string[], i: number): boolean {
  let before = i - 1;
  while (before >= 0 && CASE_IGNORABLE.test(codePoints[before]!)) before--;
  if (before < 0 || !CASED.test(codePoints[before]!)) return false;
  let after = i + 1;
  while (after < codePoints.length && CASE_IGNORABLE.test(codePoints[after]!)) after++;
  return after === codePoints.length || !CASED.test(codePoints[after]!);
}
