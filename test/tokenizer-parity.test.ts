import { describe, expect, it } from 'vitest';
import { ByteLevelBpe } from '../src/tokens/byte-level-bpe.js';
import { ChatTemplate } from '../src/tokens/chat-template.js';
import { templateSourceOf } from '../src/tokens/model-tokenizer.js';
import { textTokenizerFrom } from '../src/tokens/text-tokenizer.js';
import { llamaTokenizerConfig, llamaTokenizerJson, referenceIds, variedCorpus } from './helpers/llama.js';

const fast = new ByteLevelBpe(llamaTokenizerJson);

describe('fast byte-level BPE against @huggingface/tokenizers (Llama 3.2)', () => {
  const corpus = variedCorpus(20261123, 400);

  it('produces identical ids on a varied corpus, with and without special tokens', () => {
    let mismatches = 0;
    for (const text of corpus) {
      for (const special of [false, true]) {
        const expected = referenceIds(text, special);
        const actual = fast.encode(text, special);
        if (JSON.stringify(actual) !== JSON.stringify(expected)) {
          mismatches++;
          expect({ text, special, actual }).toEqual({ text, special, actual: expected });
        }
        expect(fast.count(text, special)).toBe(expected.length);
      }
    }
    expect(mismatches).toBe(0);
  });

  it('agrees on the whole corpus as one text (cache warm) and on long unspaced runs (heap merging)', () => {
    const all = corpus.join('');
    expect(fast.encode(all, true)).toEqual(referenceIds(all, true));
    for (const long of ['가나다라마바사아자차카타파하'.repeat(40), '中文文本'.repeat(100), 'x'.repeat(3000), '😀'.repeat(200), ' '.repeat(500) + 'a']) {
      expect(fast.encode(long, false)).toEqual(referenceIds(long, false));
    }
  });

  it('agrees on chat prompts whose messages start or end with characters Python and JavaScript trim differently', () => {
    const template = new ChatTemplate(templateSourceOf(llamaTokenizerConfig)!, 'UTC', () => Date.UTC(2026, 10, 23));
    const edges = ['\u001c', '\u001d', '\u001e', '\u001f', '\u0085', '\ufeff', '\u180e', '\u200b', '\u2028', '\u2029', '\u00a0', '\u3000', '\u1680', '\u202f', '\u205f'];
    for (const c of edges) {
      for (const text of [c, `${c}${c}안녕하세요${c}`, ` \n${c} Hello 😀 ${c}\n `, `${c}👩‍👩‍👧${c} ${c}`]) {
        const prompt = template.render({
          bos_token: '<|begin_of_text|>',
          add_generation_prompt: true,
          messages: [{ role: 'system', content: text }, { role: 'user', content: text }, { role: 'assistant', content: `${text}${c}` }, { role: 'user', content: `${c}${text}` }],
        });
        expect(fast.encode(prompt, false)).toEqual(referenceIds(prompt, false));
      }
    }
  });

  it('adds <|begin_of_text|> for add_special_tokens and splits special tokens out of text', () => {
    expect(fast.encode('Hello world', true)).toEqual([128000, 9906, 1917]);
    expect(fast.encode('<|eot_id|>', false)).toEqual([128009]);
  });

  it('falls back to @huggingface/tokenizers for a tokenizer.json it does not implement', () => {
    const withNormalizer = { ...llamaTokenizerJson, normalizer: { type: 'Lowercase' } };
    const tokenizer = textTokenizerFrom(withNormalizer, llamaTokenizerConfig);
    expect(tokenizer.implementation).toBe('huggingface');
    expect(tokenizer.encode('HELLO', false)).toEqual(referenceIds('hello', false));
    expect(textTokenizerFrom(llamaTokenizerJson, llamaTokenizerConfig).implementation).toBe('fast-bpe');
  });
});

describe('long pre-tokens: runs merged through the candidate queue', () => {
  /** One long word of random letters: many distinct merge ranks, little repetition. */
  const randomWord = (length: number) => {
    let state = 12345;
    let word = '';
    for (let i = 0; i < length; i++) {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      word += 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'[state % 52];
    }
    return word;
  };
  // 5-12 KB: long enough to exercise the queue, short enough for the reference (slower on long runs).
  const runs: Record<string, string> = {
    'one letter': 'a'.repeat(9001),
    'one letter, odd length': 'e'.repeat(7777),
    'Korean syllable': '한'.repeat(3001),
    'CJK character': '中'.repeat(2500),
    emoji: '😀'.repeat(1500),
    'one punctuation pre-token': '!'.repeat(8000),
    'dashes then a newline': '-'.repeat(6000) + '\n',
    'equals signs': '='.repeat(5003),
    dots: '.'.repeat(6001),
    spaces: ' '.repeat(9000),
    'spaces then a letter': ' '.repeat(7000) + 'x',
    tabs: '\t'.repeat(6000),
    newlines: '\n'.repeat(8000),
    'CRLF lines': '\r\n'.repeat(4000),
    'no-break spaces': '\u00a0'.repeat(3000),
    'spaces and tabs': ' \t'.repeat(3000),
    digits: '7'.repeat(9000),
    'two letters': 'ab'.repeat(4500),
    'three letters': 'abc'.repeat(3001),
    'mixed case': 'aA'.repeat(3000),
    'random letters': randomWord(10_000),
  };

  for (const [kind, text] of Object.entries(runs)) {
    it(`agrees with @huggingface/tokenizers on a run of ${kind}`, () => {
      const expected = referenceIds(text, false);
      expect(fast.encode(text, false)).toEqual(expected);
      expect(fast.count(text, true)).toBe(expected.length + 1);
    });
  }

  // Not a benchmark: each takes a few hundred ms; the bound only catches a quadratic blow-up.
  const MB = 1 << 20;
  const megabyteRuns: Record<string, string> = {
    'one letter': 'a'.repeat(MB),
    'Korean syllable': '한'.repeat(Math.floor(MB / 3)),
    'one punctuation pre-token': '!'.repeat(MB),
    spaces: ' '.repeat(MB),
    digits: '0123456789'.repeat(MB / 10),
  };
  for (const [kind, text] of Object.entries(megabyteRuns)) {
    it(`counts a megabyte-long run of ${kind} in well under 5 s`, () => {
      const started = performance.now();
      expect(fast.count(text, false)).toBeGreaterThan(0);
      expect(performance.now() - started).toBeLessThan(5000);
    });
  }
});
