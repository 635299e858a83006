import type { OpenAIRequest } from '../openai/request.js';
import type { PromptTokenCounter } from './counter.js';

/**
 * A stand-in estimate (UTF-8 bytes / 4 of every string in the prompt) used until exact
 * tokenization is configured. It is NOT what vLLM reports and is badly off for Korean.
 */
export class CharacterEstimateCounter implements PromptTokenCounter {
  async count(request: OpenAIRequest): Promise<number> {
    const prompt = request.kind === 'chat' ? request.body['messages'] : request.body['prompt'];
    return Math.ceil(utf8BytesOfStrings(prompt) / 4);
  }
}

function utf8BytesOfStrings(value: unknown): number {
  if (typeof value === 'string') return Buffer.byteLength(value, 'utf8');
  if (Array.isArray(value)) return value.reduce((sum: number, v) => sum + utf8BytesOfStrings(v), 0);
  if (value && typeof value === 'object') {
    return Object.values(value).reduce((sum: number, v) => sum + utf8BytesOfStrings(v), 0);
  }
  return 0;
}
