import { textTokenizerFrom, readTokenizerFiles, type TextTokenizer } from './text-tokenizer.js';
import type { TokenizerFiles } from './sources.js';

/** A counting task for a worker thread: only the (already rendered) texts cross the thread boundary. */
export interface CountTask {
  readonly files: TokenizerFiles;
  readonly texts: readonly string[];
  readonly addSpecialTokens: boolean;
}

const tokenizers = new Map<string, TextTokenizer>();

export default function count(task: CountTask): number {
  let tokenizer = tokenizers.get(task.files.tokenizerFile);
  if (tokenizer === undefined) {
    const { json, config } = readTokenizerFiles(task.files);
    tokenizer = textTokenizerFrom(json, config);
    tokenizers.set(task.files.tokenizerFile, tokenizer);
  }
  return task.texts.reduce((sum, text) => sum + tokenizer.count(text, task.addSpecialTokens), 0);
}
