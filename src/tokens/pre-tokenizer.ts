import { classAt, END, isOther, LETTER, NUMBER, otherRunEnd, runEnd, WHITE_SPACE, whiteSpaceRunEnd, widthOf } from './code-point-classes.js';
import { jsRegexFromPattern } from './pattern.js';

/**
 * Splits text into pre-tokens that together cover all of it, in order: given the index where one
 * starts, returns the index where it ends (always further on). `units` holds exactly the code units
 * of `text`: the hand-written scanners read those, which is about twice as fast as charCodeAt.
 */
export type PreTokenizer = (text: string, units: Uint16Array, start: number) => number;

/** Llama 3's Split pattern, exactly as its tokenizer.json spells it. */
export const LLAMA3_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/** The pattern of the ByteLevel pre-tokenizer (use_regex), GPT-2's. */
export const GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/**
 * The pre-tokenizer for a Split pattern (Isolated): a hand-written scanner for the two patterns it
 * recognises by their exact text, the pattern as a JS RegExp (pattern.ts) for any other.
 */
export function preTokenizerFor(pattern: string): PreTokenizer {
  if (pattern === LLAMA3_PATTERN) return llama3PreTokenEnd;
  if (pattern === GPT2_PATTERN) return gpt2PreTokenEnd;
  return regexPreTokenizer(jsRegexFromPattern(pattern));
}

const APOSTROPHE = 0x27;
const SPACE = 0x20;
const CARRIAGE_RETURN = 0x0d;
const LINE_FEED = 0x0a;

const isLineBreak = (unit: number) => unit === LINE_FEED || unit === CARRIAGE_RETURN;

/**
 * LLAMA3_PATTERN's match at `start`, alternative by alternative in the regex's order. Every code
 * point starts a match of some alternative, so the matches tile the text.
 */
export function llama3PreTokenEnd(_text: string, units: Uint16Array, start: number): number {
  const unit = units[start]!;
  const bits = classAt(units, start);
  // [^\r\n\p{L}\p{N}]?\p{L}+ without the optional character (an apostrophe is no letter)
  if (bits & LETTER) return runEnd(units, start + widthOf(bits), LETTER);
  if (unit === APOSTROPHE) {
    const end = contractionEnd(units, start, true);
    if (end >= 0) return end;
  }
  // \p{N}{1,3}
  if (bits & NUMBER) return numberRunEnd(units, start, 3);
  const next = start + widthOf(bits);
  const nextBits = classAt(units, next);
  // [^\r\n\p{L}\p{N}]?\p{L}+ with it
  if (nextBits & LETTER && !isLineBreak(unit)) return runEnd(units, next + widthOf(nextBits), LETTER);
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  const othersStart = isOther(bits) ? start : unit === SPACE && isOther(nextBits) ? next : -1;
  if (othersStart >= 0) {
    let end = otherRunEnd(units, othersStart);
    while (end < units.length && isLineBreak(units[end]!)) end++;
    return end;
  }
  // \s*[\r\n]+: \s* backtracks to the last line break of the run
  const end = whiteSpaceRunEnd(units, start);
  for (let i = end - 1; i >= start; i--) if (isLineBreak(units[i]!)) return i + 1;
  return spaceRunMatchEnd(units, start, end);
}

/** GPT2_PATTERN's match at `start` (case-sensitive contractions, unbounded number runs). */
export function gpt2PreTokenEnd(_text: string, units: Uint16Array, start: number): number {
  const unit = units[start]!;
  if (unit === APOSTROPHE) {
    const end = contractionEnd(units, start, false);
    if (end >= 0) return end;
  }
  // ' ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+': the optional space is taken when any of them follows it
  const from = unit === SPACE && !(classAt(units, start + 1) & (WHITE_SPACE | END)) ? start + 1 : start;
  const bits = classAt(units, from);
  if (bits & LETTER) return runEnd(units, from, LETTER);
  if (bits & NUMBER) return runEnd(units, from, NUMBER);
  if (isOther(bits)) return otherRunEnd(units, from);
  return spaceRunMatchEnd(units, start, whiteSpaceRunEnd(units, start));
}

/** The contraction alternatives, without their apostrophe, in the patterns' order. */
const CONTRACTIONS = ['s', 't', 're', 've', 'm', 'll', 'd'];

/**
 * The end of the contraction at `start` (an apostrophe), or -1. Case-insensitively, the way
 * pattern.ts writes (?i:...) for the RegExp: each ASCII letter or its ASCII capital, nothing else.
 */
function contractionEnd(units: Uint16Array, start: number, ignoreCase: boolean): number {
  // Setting bit 0x20 lowercases an ASCII capital and maps no other code unit onto a lowercase ASCII letter.
  const fold = ignoreCase ? 0x20 : 0;
  for (const suffix of CONTRACTIONS) {
    let k = 0;
    while (k < suffix.length && start + 1 + k < units.length && (units[start + 1 + k]! | fold) === suffix.charCodeAt(k)) k++;
    if (k === suffix.length) return start + 1 + k;
  }
  return -1;
}

/** The end of at most `limit` numbers (\p{N}) from `start`. */
function numberRunEnd(units: Uint16Array, start: number, limit: number): number {
  let end = start;
  for (let taken = 0; taken < limit; taken++) {
    const bits = classAt(units, end);
    if (!(bits & NUMBER)) break;
    end += widthOf(bits);
  }
  return end;
}

/**
 * \s+(?!\S)|\s+ on the white-space run [start, end): all of it at the end of the text, else all but
 * its last character (which goes with what follows), unless that is all there is.
 */
function spaceRunMatchEnd(units: Uint16Array, start: number, end: number): number {
  return end === units.length || end - start === 1 ? end : end - 1;
}

/** Split(Isolated) with a RegExp: each match is a pre-token, and so is the text between matches. */
function regexPreTokenizer(regex: RegExp): PreTokenizer {
  return (text, _units, start) => {
    regex.lastIndex = start;
    let match = regex.exec(text);
    if (match !== null && match.index === start && match[0].length === 0) {
      // An empty match is no pre-token: the piece starting here runs to the next match.
      regex.lastIndex = start + (text.codePointAt(start)! > 0xffff ? 2 : 1);
      match = regex.exec(text);
    }
    if (match === null) return text.length;
    return match.index > start ? match.index : match.index + match[0].length;
  };
}
