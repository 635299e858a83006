import type { OpenAIRequest } from '../openai/request.js';

/** Counts the prompt tokens the model server will report for a request to `model`. */
export interface PromptTokenCounter {
  count(model: string, request: OpenAIRequest): Promise<number>;
}
