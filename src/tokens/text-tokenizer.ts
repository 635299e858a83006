import { readFileSync } from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';
import { ByteLevelBpe, type TokenizerJson } from './byte-level-bpe.js';
import { UnsupportedTokenizerError } from './errors.js';
import type { TokenizerFiles } from './sources.js';

/** Turns text into token ids the way the model server's tokenizer does. */
export interface TextTokenizer {
  readonly implementation: 'fast-bpe' | 'huggingface';
  encode(text: string, addSpecialTokens: boolean): number[];
  count(text: string, addSpecialTokens: boolean): number;
}

/** The fast byte-level BPE when tokenizer.json fits it, else @huggingface/tokenizers. */
export function textTokenizerFrom(json: TokenizerJson, config: object): TextTokenizer {
  try {
    const fast = new ByteLevelBpe(json);
    return { implementation: 'fast-bpe', encode: (t, s) => fast.encode(t, s), count: (t, s) => fast.count(t, s) };
  } catch (err) {
    if (!(err instanceof UnsupportedTokenizerError)) throw err;
    return huggingFaceTokenizer(json, config);
  }
}

export function huggingFaceTokenizer(json: object, config: object): TextTokenizer {
  const tokenizer = new Tokenizer(json, config);
  const encode = (text: string, addSpecialTokens: boolean) => tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  return { implementation: 'huggingface', encode, count: (t, s) => encode(t, s).length };
}

export function readTokenizerFiles(files: TokenizerFiles): { json: TokenizerJson; config: Record<string, unknown> } {
  return {
    json: JSON.parse(readFileSync(files.tokenizerFile, 'utf8')) as TokenizerJson,
    config: JSON.parse(readFileSync(files.configFile, 'utf8')) as Record<string, unknown>,
  };
}
