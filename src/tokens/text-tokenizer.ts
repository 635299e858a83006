import { readFileSync } from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';
import { ByteLevelBpe, type BpeTables, type TokenizerJson } from './byte-level-bpe.js';
import { UnsupportedTokenizerError } from './errors.js';
import type { TokenizerFiles } from './sources.js';

/** Turns text into token ids the way the model server's tokenizer does. */
export interface TextTokenizer {
  readonly implementation: 'fast-bpe' | 'huggingface';
  encode(text: string, addSpecialTokens: boolean): number[];
  count(text: string, addSpecialTokens: boolean): number;
}

/**
 * How a worker thread gets the same tokenizer as the main thread: the fast path's tables by reference
 * (shared memory, no second parse of tokenizer.json), or for @huggingface/tokenizers the text it read.
 */
export type TokenizerHandoff =
  | { readonly kind: 'fast-bpe'; readonly tables: BpeTables; readonly config: Record<string, unknown> }
  /** tokenizer.json's text as the main thread read it (the file may have changed since). */
  | { readonly kind: 'huggingface'; readonly json: string; readonly config: Record<string, unknown> };

export interface LoadedTokenizer {
  readonly text: TextTokenizer;
  /** tokenizer_config.json (special tokens and the chat template). */
  readonly config: Record<string, unknown>;
  readonly handoff: TokenizerHandoff;
}

/** The fast byte-level BPE when tokenizer.json fits it, else @huggingface/tokenizers. */
export function textTokenizerFrom(json: TokenizerJson, config: object): TextTokenizer {
  return fastOrGeneral(json, config).text;
}

export function loadTokenizerFiles(files: TokenizerFiles): LoadedTokenizer {
  const jsonText = readFileSync(files.tokenizerFile, 'utf8');
  const config = JSON.parse(readFileSync(files.configFile, 'utf8')) as Record<string, unknown>;
  const { text, tables } = fastOrGeneral(JSON.parse(jsonText) as TokenizerJson, config);
  return { text, config, handoff: tables === undefined ? { kind: 'huggingface', json: jsonText, config } : { kind: 'fast-bpe', tables, config } };
}

export function loadHandedOff(handoff: TokenizerHandoff): Omit<LoadedTokenizer, 'handoff'> {
  const text = handoff.kind === 'fast-bpe' ? fastTokenizer(new ByteLevelBpe(handoff.tables)) : huggingFaceTokenizer(JSON.parse(handoff.json) as object, handoff.config);
  return { text, config: handoff.config };
}

function fastOrGeneral(json: TokenizerJson, config: object): { text: TextTokenizer; tables?: BpeTables } {
  try {
    const fast = new ByteLevelBpe(json);
    return { text: fastTokenizer(fast), tables: fast.tables };
  } catch (err) {
    if (!(err instanceof UnsupportedTokenizerError)) throw err;
    return { text: huggingFaceTokenizer(json, config) };
  }
}

function fastTokenizer(fast: ByteLevelBpe): TextTokenizer {
  return { implementation: 'fast-bpe', encode: (t, s) => fast.encode(t, s), count: (t, s) => fast.count(t, s) };
}

function huggingFaceTokenizer(json: object, config: object): TextTokenizer {
  const tokenizer = new Tokenizer(json, config);
  const encode = (text: string, addSpecialTokens: boolean) => tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  return { implementation: 'huggingface', encode, count: (t, s) => encode(t, s).length };
}
