import type { Prompt } from '../openai/prompt.js';
import { ChatTemplate, ChatTemplateError } from './chat-template.js';
import { ModelTokenizer } from './model-tokenizer.js';
import type { TokenizerFiles } from './sources.js';
import { readTokenizerFiles, textTokenizerFrom, type TextTokenizer } from './text-tokenizer.js';

/** A prompt to render (chat) and count on a worker thread, with everything its model needs. */
export interface CountTask {
  /** tokenizer.json, and tokenizer_config.json for the special tokens the template reads. */
  readonly files: TokenizerFiles;
  /** The model's chat template source; undefined when it has none. */
  readonly chatTemplate: string | undefined;
  readonly templateTimeZone: string;
  /** strftime_now's "now", read from the main thread's clock. */
  readonly nowMs: number;
  readonly prompt: Prompt;
}

/**
 * The count, or why the prompt was refused. A thrown error loses its class on the way back to the
 * main thread, so a refusal (the caller's 400) travels as a value; anything thrown is a server fault.
 */
export type CountResult = { readonly kind: 'counted'; readonly tokens: readonly number[] } | { readonly kind: 'refused'; readonly message: string };

const tokenizerFiles = new Map<string, { text: TextTokenizer; config: Record<string, unknown> }>();
const modelTokenizers = new Map<string, ModelTokenizer>();
/** A task renders synchronously, start to finish, so the cached templates' clock can read its time from here. */
let taskNowMs = 0;

export default function countPrompt(task: CountTask): CountResult {
  const tokenizer = modelTokenizerFor(task);
  taskNowMs = task.nowMs;
  try {
    return { kind: 'counted', tokens: tokenizer.countPrompt(task.prompt) };
  } catch (err) {
    if (err instanceof ChatTemplateError) return { kind: 'refused', message: err.message };
    throw err;
  }
}

function modelTokenizerFor(task: CountTask): ModelTokenizer {
  const key = JSON.stringify([task.files.tokenizerFile, task.chatTemplate, task.templateTimeZone]);
  let tokenizer = modelTokenizers.get(key);
  if (tokenizer === undefined) {
    let loaded = tokenizerFiles.get(task.files.tokenizerFile);
    if (loaded === undefined) {
      const { json, config } = readTokenizerFiles(task.files);
      loaded = { text: textTokenizerFrom(json, config), config };
      tokenizerFiles.set(task.files.tokenizerFile, loaded);
    }
    const template = task.chatTemplate === undefined ? undefined : new ChatTemplate(task.chatTemplate, task.templateTimeZone, () => taskNowMs);
    tokenizer = new ModelTokenizer(loaded.text, template, loaded.config);
    modelTokenizers.set(key, tokenizer);
  }
  return tokenizer;
}
