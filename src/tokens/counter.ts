import type { OpenAIRequest } from '../openai/request.js';

/**
 * Counts the prompt tokens the model server will report for a request to `model`: one count per
 * sequence it will complete (a chat request is one; a completions request has one per prompt).
 */
export interface PromptTokenCounter {
  count(model: string, request: OpenAIRequest): Promise<readonly number[]>;
}
