import { Tokenizer } from '@huggingface/tokenizers';
import { Tokenizer as RustTokenizer } from 'tokenizers';
import { describe, expect, it } from 'vitest';
import { ByteLevelBpe, type TokenizerJson } from '../src/tokens/byte-level-bpe.js';
import { CodeUnitBuffer } from '../src/tokens/code-units.js';
import { jsRegexFromPattern } from '../src/tokens/pattern.js';
import { GPT2_PATTERN, gpt2PreTokenEnd, LLAMA3_PATTERN, llama3PreTokenEnd, preTokenizerFor, type PreTokenizer } from '../src/tokens/pre-tokenizer.js';
import { GenerationalSubstringCache, hashOfRange, SubstringTable } from '../src/tokens/substring-table.js';
import { llamaTokenizerConfig, llamaTokenizerJson, referenceIds, variedCorpus } from './helpers/llama.js';

/*
 * The hand-written pre-tokenizers must split exactly where the RegExp (pattern.ts) splits — the
 * regex is the specification — on every kind of text, and the ids and counts built on them must
 * equal the reference tokenizers'.
 */

const codeUnits = new CodeUnitBuffer();

/** Where each pre-token ends, by a PreTokenizer. */
function scannedEnds(preTokenEnd: PreTokenizer, text: string): number[] {
  const units = codeUnits.of(text);
  const ends: number[] = [];
  for (let start = 0; start < units.length; ) {
    const end = preTokenEnd(text, units, start);
    if (!(end > start && end <= text.length)) throw new Error(`pre-token [${start}, ${end}) in ${JSON.stringify(text)}`);
    ends.push(end);
    start = end;
  }
  return ends;
}

/** Where each match of the RegExp ends; for these patterns the matches must cover the text. */
function regexEnds(regex: RegExp, text: string): number[] {
  const ends: number[] = [];
  let covered = 0;
  regex.lastIndex = 0;
  for (let match = regex.exec(text); match !== null; match = regex.exec(text)) {
    if (match.index !== covered) throw new Error(`the regex skips [${covered}, ${match.index}) of ${JSON.stringify(text)}`);
    covered = match.index + match[0].length;
    ends.push(covered);
  }
  if (covered !== text.length) throw new Error(`the regex leaves the end of ${JSON.stringify(text)}`);
  return ends;
}

const piecesAt = (text: string, ends: number[]) => ends.map((end, i) => text.slice(i === 0 ? 0 : ends[i - 1], end));

/** Splits every text both ways; returns the first few disagreements, readably. */
function disagreements(pattern: string, preTokenEnd: PreTokenizer, texts: Iterable<string>): { checked: number; differ: object[] } {
  const regex = jsRegexFromPattern(pattern);
  const differ: object[] = [];
  let checked = 0;
  for (const text of texts) {
    checked++;
    const expected = regexEnds(regex, text);
    const actual = scannedEnds(preTokenEnd, text);
    if (expected.length !== actual.length || expected.some((end, i) => end !== actual[i])) {
      if (differ.push({ text, regex: piecesAt(text, expected), scanner: piecesAt(text, actual) }) >= 5) break;
    }
  }
  return { checked, differ };
}

/** A deterministic generator of numbers in [0, 1). */
function randomSource(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/**
 * The pieces adversarial texts are made of: each class boundary the patterns care about. Unicode
 * names where the character is not obvious.
 */
const ATOMS = [
  // letters: ASCII, Latin, titlecase (Lt), modifier (Lm), Hangul, CJK, kana, astral (𝐀 U+1D400, 𝔘 U+1D518)
  'a', 'Z', 'xyz', 'é', 'ß', 'ǅ', 'ʰ', '한', '국어', '中', 'ア', '𝐀', '𝔘𝔘',
  // numbers: runs of 1 to 7 digits, Arabic-Indic, superscript and fraction (No), Roman (Nl), astral (𝟏 U+1D7CF, 𐍈 U+10348 is Nl)
  '0', '12', '123', '1234', '12345', '123456', '1234567', '٣', '²', '½', 'Ⅻ', '𝟏', '𝟏𝟐𝟑𝟒', '𐍈',
  // contractions in all cases, almost-contractions, and apostrophes before lookalikes (ſ U+017F, K U+212A)
  "'", "'s", "'S", "'t", "'T", "'re", "'RE", "'rE", "'Re", "'ve", "'VE", "'vE", "'m", "'M", "'ll", "'LL", "'lL", "'Ll", "'d", "'D",
  "'r", "'v", "'l", "'x", "'ſ", "'K", "''",
  // punctuation and symbols, astral emoji, a ZWJ sequence
  '.', ',', '!?', '-', '"', '(', '`', '$', '€', '😀', '👩‍👧', '🇰🇷',
  // white space: Unicode White_Space, line breaks, and lookalikes that are not White_Space
  ' ', '  ', '   ', '\t', '\t\t', '\r', '\n', '\r\n', '\n\n', ' \n ', '\u000b', '\u000c', '\u0085', '\u2028', '\u2029',
  '\u00a0', '\u3000', '\u1680', '\u202f', '\u205f', '\u200b', '\ufeff', '\u180e', '\u001c', '\u001f',
  // combining marks (\p{M} is not \p{L}): Mn, Mc, Me
  '\u0301', '\u0903', '\u20dd',
  // lone surrogates, control characters
  '\ud800', '\udbff', '\udc00', '\udfff', '\u0000', '\u007f',
];

/** Every text of one, two and three atoms: half a million. */
function* atomCombinations(): Generator<string> {
  for (const a of ATOMS) {
    yield a;
    for (const b of ATOMS) {
      yield a + b;
      for (const c of ATOMS) yield a + b + c;
    }
  }
}

/** Longer random sequences of atoms. */
function* atomSequences(seed: number, count: number, maxAtoms: number): Generator<string> {
  const random = randomSource(seed);
  for (let i = 0; i < count; i++) {
    let text = '';
    for (let k = 1 + Math.floor(random() * maxAtoms); k > 0; k--) text += ATOMS[Math.floor(random() * ATOMS.length)]!;
    yield text;
  }
}

/** Random code points across all planes, surrogates (lone, or paired by chance) included. */
function* randomCodePoints(seed: number, count: number): Generator<string> {
  const random = randomSource(seed);
  const ranges: Array<[number, number]> = [
    [0x00, 0x7f],
    [0x80, 0x2fff],
    [0x3000, 0xd7ff],
    [0xd800, 0xdfff],
    [0xe000, 0xffff],
    [0x10000, 0x1ffff],
    [0x20000, 0x3ffff],
    [0x40000, 0x10ffff],
  ];
  for (let i = 0; i < count; i++) {
    let text = '';
    for (let k = 1 + Math.floor(random() * 12); k > 0; k--) {
      const [lo, hi] = ranges[Math.floor(random() * ranges.length)]!;
      const codePoint = lo + Math.floor(random() * (hi - lo + 1));
      text += codePoint >= 0xd800 && codePoint <= 0xdfff ? String.fromCharCode(codePoint) : String.fromCodePoint(codePoint);
    }
    yield text;
  }
}

describe.each([
  ['Llama 3', LLAMA3_PATTERN, llama3PreTokenEnd],
  ['GPT-2', GPT2_PATTERN, gpt2PreTokenEnd],
] as const)('the %s pre-tokenizer splits where its RegExp does', (_name, pattern, preTokenEnd) => {
  it('on the varied corpus', () => {
    const corpus = [...variedCorpus(20261123, 3000), ...variedCorpus(7, 3000)];
    expect(disagreements(pattern, preTokenEnd, corpus)).toEqual({ checked: 6000, differ: [] });
  });

  it(`on every text of up to three of ${ATOMS.length} adversarial atoms`, () => {
    const n = ATOMS.length;
    expect(disagreements(pattern, preTokenEnd, atomCombinations())).toEqual({ checked: n + n * n + n * n * n, differ: [] });
  });

  it('on random sequences of up to 16 atoms', () => {
    expect(disagreements(pattern, preTokenEnd, atomSequences(99, 100_000, 16))).toEqual({ checked: 100_000, differ: [] });
  });

  it('on random code points across all planes', () => {
    expect(disagreements(pattern, preTokenEnd, randomCodePoints(2026, 200_000))).toEqual({ checked: 200_000, differ: [] });
  });

  it('on long runs of each class', () => {
    const runs = ATOMS.flatMap((atom) => [atom.repeat(50), ` ${atom.repeat(20)}\n`, `${atom.repeat(9)}x${atom.repeat(9)}`]);
    expect(disagreements(pattern, preTokenEnd, runs)).toEqual({ checked: runs.length, differ: [] });
  });
});

describe('choosing a pre-tokenizer', () => {
  it("takes Llama 3's scanner for exactly the pattern in Llama 3's tokenizer.json", () => {
    const split = (llamaTokenizerJson.pre_tokenizer as { pretokenizers: Array<{ pattern: { Regex: string } }> }).pretokenizers[0]!;
    expect(split.pattern.Regex).toBe(LLAMA3_PATTERN);
    expect(preTokenizerFor(LLAMA3_PATTERN)).toBe(llama3PreTokenEnd);
    expect(preTokenizerFor(GPT2_PATTERN)).toBe(gpt2PreTokenEnd);
  });

  it('keeps any other pattern, even a near copy, on its RegExp', () => {
    const nearCopy = LLAMA3_PATTERN.replace('\\p{N}{1,3}', '\\p{N}{1,2}');
    const preTokenEnd = preTokenizerFor(nearCopy);
    expect(preTokenEnd).not.toBe(llama3PreTokenEnd);
    expect(disagreements(nearCopy, preTokenEnd, variedCorpus(3, 500))).toEqual({ checked: 500, differ: [] });
    expect(scannedEnds(preTokenEnd, '12345')).toEqual([2, 4, 5]);
  });
});

/** Compares encode and count (cold, then with warm caches) with the reference ids of every text. */
function expectSameIds(bpe: ByteLevelBpe, texts: string[], expected: number[][]) {
  let mismatches = 0;
  texts.forEach((text, i) => {
    const ids = bpe.encode(text, false);
    if (ids.length !== expected[i]!.length || ids.some((id, k) => id !== expected[i]![k])) {
      if (++mismatches <= 3) expect({ text, ids }).toEqual({ text, ids: expected[i] });
    }
    expect(bpe.count(text, false)).toBe(expected[i]!.length);
  });
  texts.forEach((text, i) => expect(bpe.count(text, false)).toBe(expected[i]!.length));
  expect(mismatches).toBe(0);
}

/** Texts of `count` strings each, joined by spaces (so that runs of letters stay reference-sized). */
function joined(strings: Iterable<string>, count: number): string[] {
  const texts: string[] = [];
  let group: string[] = [];
  for (const text of strings) {
    group.push(text);
    if (group.length === count) {
      texts.push(group.join(' '));
      group = [];
    }
  }
  return texts;
}

describe('Llama 3 ids against @huggingface/tokenizers', () => {
  const fast = new ByteLevelBpe(llamaTokenizerJson);
  const expectSameAsReference = (texts: string[]) => expectSameIds(fast, texts, texts.map((text) => referenceIds(text, false)));

  it('on 60 000 strings of up to 8 adversarial atoms', () => {
    expectSameAsReference(joined(atomSequences(5, 60_000, 8), 100));
  });

  it('on 30 000 strings of random code points from all planes', () => {
    expectSameAsReference(joined(randomCodePoints(77, 30_000), 100));
  });

  it('on a varied corpus', () => {
    expectSameAsReference(variedCorpus(424242, 2000));
  });

  it('through the RegExp path too: text between matches and around empty matches is a pre-token', () => {
    for (const pattern of ['\\p{L}+|\\p{N}', ' ?\\p{L}*']) {
      const json = withSplitPattern(llamaTokenizerJson, pattern);
      const reference = new Tokenizer(json, llamaTokenizerConfig);
      const texts = [...variedCorpus(8, 200), ...atomSequences(6, 200, 40)];
      expectSameIds(new ByteLevelBpe(json), texts, texts.map((text) => reference.encode(text, { add_special_tokens: false }).ids));
    }
  });
});

function withSplitPattern(json: TokenizerJson, pattern: string): TokenizerJson {
  const [split, byteLevel] = (json.pre_tokenizer as { pretokenizers: object[] }).pretokenizers;
  return { ...json, pre_tokenizer: { type: 'Sequence', pretokenizers: [{ ...split, pattern: { Regex: pattern } }, byteLevel] } };
}

/*
 * GPT-2's ByteLevel regex is checked against Rust tokenizers: @huggingface/tokenizers runs it with
 * JavaScript's \s, which differs from Rust's on U+0085 and U+FEFF.
 */
describe('GPT-2 pre-tokenization (ByteLevel with use_regex) ids against Rust tokenizers', () => {
  it('on the varied corpus, adversarial atoms and random code points', async () => {
    const json = { ...llamaTokenizerJson, pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true } };
    const rust = RustTokenizer.fromString(JSON.stringify(json));
    const texts = [...variedCorpus(12, 500), ...joined(atomSequences(13, 20_000, 8), 100), ...joined(randomCodePoints(14, 10_000), 100)];
    const expected: number[][] = [];
    for (const text of texts) expected.push((await rust.encode(text, null, { addSpecialTokens: false })).getIds());
    expectSameIds(new ByteLevelBpe(json), texts, expected);
  });
});

/** The code units of a text, the slow and obvious way. */
const unitsOf = (text: string) => Uint16Array.from({ length: text.length }, (_, i) => text.charCodeAt(i));

describe('SubstringTable', () => {
  it('never returns the value of another key with the same hash', () => {
    const table = SubstringTable.sized(8, 64);
    const units = unitsOf('abbaab');
    const collidingHash = 12345;
    table.add(units, 0, 2, collidingHash, 1); // ab
    table.add(units, 2, 4, collidingHash, 2); // ba
    table.add(units, 0, 3, collidingHash, 3); // abb
    expect(table.get(units, 4, 6, collidingHash)).toBe(1); // ab again, elsewhere
    expect(table.get(units, 2, 4, collidingHash)).toBe(2);
    expect(table.get(units, 0, 3, collidingHash)).toBe(3);
    expect(table.get(units, 3, 5, collidingHash)).toBe(-1); // aa
    expect(table.get(units, 1, 3, collidingHash)).toBe(-1); // bb
  });

  it('finds keys by any range holding the same code units', () => {
    const table = SubstringTable.sized(4, 16);
    const key = unitsOf('한😀');
    table.add(key, 0, key.length, hashOfRange(key, 0, key.length), 42);
    const text = unitsOf('x 한😀 y');
    expect(table.get(text, 2, 5, hashOfRange(text, 2, 5))).toBe(42);
    expect(table.get(text, 2, 4, hashOfRange(text, 2, 4))).toBe(-1);
  });

  it('reports when it is full, by entries and by key units', () => {
    const table = SubstringTable.sized(2, 5);
    const units = unitsOf('abcde');
    expect(table.hasRoomFor(5)).toBe(true);
    expect(table.hasRoomFor(6)).toBe(false);
    table.add(units, 0, 3, hashOfRange(units, 0, 3), 1);
    expect(table.hasRoomFor(3)).toBe(false);
    table.add(units, 3, 5, hashOfRange(units, 3, 5), 2);
    expect(table.hasRoomFor(0)).toBe(false);
    table.clear();
    expect(table.hasRoomFor(5)).toBe(true);
    expect(table.get(units, 0, 3, hashOfRange(units, 0, 3))).toBe(-1);
  });
});

describe('GenerationalSubstringCache', () => {
  it('keeps the last generation, drops older ones, and never answers wrongly', () => {
    const cache = new GenerationalSubstringCache(4, 64);
    const units = unitsOf('k0k1k2k3k4k5k6k7k8k9');
    const lookUp = (i: number) => cache.get(units, 2 * i, 2 * i + 2, hashOfRange(units, 2 * i, 2 * i + 2));
    for (let i = 0; i < 10; i++) {
      expect(lookUp(i)).toBe(-1);
      cache.add(units, 2 * i, 2 * i + 2, hashOfRange(units, 2 * i, 2 * i + 2), 100 + i);
    }
    // Generations: k0-k3 (dropped), k4-k7 (previous), k8-k9 (current).
    expect([0, 1, 2, 3].map(lookUp)).toEqual([-1, -1, -1, -1]);
    expect([9, 8, 7, 6].map(lookUp)).toEqual([109, 108, 107, 106]);
    // Hits in the previous generation move to the current one, turning generations over: what is
    // dropped on the way is a miss, never another key's value.
    for (let round = 0; round < 3; round++) for (let i = 0; i < 10; i++) expect([-1, 100 + i]).toContain(lookUp(i));
  });
});

describe('CodeUnitBuffer', () => {
  it('copies every code unit, lone surrogates included, however long or short the text', () => {
    const buffer = new CodeUnitBuffer();
    for (const text of ['a\ud800b', '\udc00', 'x'.repeat(5000) + '😀\ud83d', '', '한국어', `${'concatenated '.repeat(300)}${Math.random()}`]) {
      expect(buffer.of(text)).toEqual(unitsOf(text));
    }
  });
});
