import type { OpenAIRequest } from '../openai/request.js';

/** Counts the prompt tokens the model server will see for a request. */
export interface PromptTokenCounter {
  count(request: OpenAIRequest): Promise<number>;
}
