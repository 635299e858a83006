import type { Prompt } from '../openai/prompt.js';
import { ChatTemplate, ChatTemplateError } from './chat-template.js';
import { ModelTokenizer } from './model-tokenizer.js';
import { loadHandedOff, type TextTokenizer, type TokenizerHandoff } from './text-tokenizer.js';

/** A prompt to render (chat) and count on a worker thread, with everything its model needs. */
export interface CountTask {
  /** Names the tokenizer among those this thread has been handed. */
  readonly tokenizerKey: string;
  /** The tokenizer itself: sent when warming a thread up, or again after `needs-tokenizer`. */
  readonly tokenizer?: TokenizerHandoff;
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
 * `needs-tokenizer`: this thread (a replacement for one that died) has not been handed the tokenizer.
 */
export type CountResult =
  | { readonly kind: 'counted'; readonly tokens: readonly number[] }
  | { readonly kind: 'refused'; readonly message: string }
  | { readonly kind: 'needs-tokenizer' };

const tokenizers = new Map<string, { text: TextTokenizer; config: Record<string, unknown> }>();
const modelTokenizers = new Map<string, ModelTokenizer>();
/** A task renders synchronously, start to finish, so the cached templates' clock can read its time from here. */
let taskNowMs = 0;

export default function countPrompt(task: CountTask): CountResult {
  const tokenizer = modelTokenizerFor(task);
  if (tokenizer === undefined) return { kind: 'needs-tokenizer' };
  taskNowMs = task.nowMs;
  try {
    return { kind: 'counted', tokens: tokenizer.countPrompt(task.prompt) };
  } catch (err) {
    if (err instanceof ChatTemplateError) return { kind: 'refused', message: err.message };
    throw err;
  }
}

function modelTokenizerFor(task: CountTask): ModelTokenizer | undefined {
  const key = JSON.stringify([task.tokenizerKey, task.chatTemplate, task.templateTimeZone]);
  let tokenizer = modelTokenizers.get(key);
  if (tokenizer === undefined) {
    let loaded = tokenizers.get(task.tokenizerKey);
    if (loaded === undefined) {
      if (task.tokenizer === undefined) return undefined;
      loaded = loadHandedOff(task.tokenizer);
      tokenizers.set(task.tokenizerKey, loaded);
    }
    const template = task.chatTemplate === undefined ? undefined : new ChatTemplate(task.chatTemplate, task.templateTimeZone, () => taskNowMs);
    tokenizer = new ModelTokenizer(loaded.text, template, loaded.config);
    modelTokenizers.set(key, tokenizer);
  }
  return tokenizer;
}
