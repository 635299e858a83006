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
 * How a worker thread gets the same tokenizer: the fast path's tables by reference (shared memory,
 * no second parse of tokenizer.json), or the files for @huggingface/tokenizers to read.
 */
export type TokenizerHandoff =
  | { readonly kind: 'fast-bpe'; readonly tables: BpeTables; readonly config: Record<string, unknown> }
  | { readonly kind: 'files'; readonly files: TokenizerFiles };

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
  const { json, config } = readTokenizerFiles(files);
  const { text, tables } = fastOrGeneral(json, config);
  return { text, config, handoff: tables === undefined ? { kind: 'files', files } : { kind: 'fast-bpe', tables, config } };
}

export function loadHandedOff(handoff: TokenizerHandoff): Omit<LoadedTokenizer, 'handoff'> {
  if (handoff.kind === 'files') return loadTokenizerFiles(handoff.files);
  return { text: fastTokenizer(new ByteLevelBpe(handoff.tables)), config: handoff.config };
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

function readTokenizerFiles(files: TokenizerFiles): { json: TokenizerJson; config: Record<string, unknown> } {
  return {
    json: JSON.parse(readFileSync(files.tokenizerFile, 'utf8')) as TokenizerJson,
    config: JSON.parse(readFileSync(files.configFile, 'utf8')) as Record<string, unknown>,
  };
}
