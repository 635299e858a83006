import { parseOpenAIRequest } from '../../openai/request.js';
import type { PromptTokenCounter } from '../../tokens/counter.js';

export interface PromptCount {
  readonly model: string;
  /** Exactly what vLLM would report as usage.prompt_tokens for the text sent as one user message. */
  readonly promptTokens: number;
  /** Unicode code points, not UTF-16 units. */
  readonly characters: number;
  /** The characters/4 estimate the systems tokenwarden replaces used. */
  readonly charsOver4: number;
  /** promptTokens / charsOver4; null for an empty text. */
  readonly ratio: number | null;
}

/** Counts `text` as one user chat message through `model`'s chat template: the path POST /v1/tokenize takes. */
export async function countPrompt(counter: PromptTokenCounter, model: string, text: string): Promise<PromptCount> {
  const request = parseOpenAIRequest(JSON.stringify({ model, messages: [{ role: 'user', content: text }] }), 'chat');
  const sequences = await counter.count(model, request);
  const promptTokens = sequences.reduce((sum, n) => sum + n, 0);
  const characters = [...text].length;
  const charsOver4 = Math.ceil(characters / 4);
  return { model, promptTokens, characters, charsOver4, ratio: charsOver4 === 0 ? null : promptTokens / charsOver4 };
}
