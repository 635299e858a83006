import { errorBody } from './responses.js';
import { BadRequestError, type OpenAIRequest } from './request.js';

/** The request cannot fit the model's context: vLLM would refuse it with this 400 before generating. */
export class ContextLengthError extends Error {
  override name = 'ContextLengthError';
  /** vLLM's own error body, so a client sees the same answer whether tokenwarden or vLLM refuses. */
  readonly body: string;

  constructor(message: string, param: string, value: number) {
    super(message);
    // vLLM's VLLMValidationError appends the parameter and value to its message.
    this.body = errorBody({ message: `${message} (parameter=${param}, value=${value})`, type: 'BadRequestError', param, code: 400 });
  }
}

/**
 * The tokens to reserve for a request: each prompt (vLLM completes every prompt of a completions
 * request separately) plus, for each of its `n` choices, what vLLM may generate — the completion
 * tokens asked for, else that prompt's remaining context (`maxModelLen`), else
 * `defaultCompletionTokens` when the context length is not configured. With `maxModelLen` a prompt
 * that cannot fit is refused as vLLM refuses it.
 */
export function tokensToReserve(
  request: OpenAIRequest,
  prompts: readonly number[],
  maxModelLen: number | undefined,
  defaultCompletionTokens: number,
): number {
  const asked = request.maxTokens;
  let total = 0;
  for (const promptTokens of prompts) total += promptTokens + completionBudget(promptTokens, asked, maxModelLen, defaultCompletionTokens) * request.choices;
  if (total > MAX_RESERVATION) {
    throw new BadRequestError(`The request could generate ${total} tokens, more than one request may reserve (${MAX_RESERVATION}).`, 'max_tokens');
  }
  return total;
}

/** No request reserves more (about 1.1e12 tokens): no counter can near int64 (or Redis refuse an increment) within a window. */
export const MAX_RESERVATION = 2 ** 40;

function completionBudget(promptTokens: number, asked: number | undefined, maxModelLen: number | undefined, defaultCompletionTokens: number): number {
  if (maxModelLen === undefined) return asked ?? defaultCompletionTokens;
  const output = asked ?? 0;
  // vLLM's checks and wording, in its order: the output alone, then the prompt against what is left
  // (vLLM tokenizes at most max_input + 1 tokens, hence "at least").
  if (output > maxModelLen) {
    throw new ContextLengthError(
      `max_tokens=${output} cannot be greater than max_model_len=max_total_tokens=${maxModelLen}. Please request fewer output tokens.`,
      'max_tokens',
      output,
    );
  }
  const maxInput = maxModelLen - output;
  if (promptTokens > maxInput) {
    const seen = Math.min(promptTokens, maxInput + 1);
    const atLeast = seen === maxInput + 1 ? 'at least ' : '';
    throw new ContextLengthError(
      `This model's maximum context length is ${maxModelLen} tokens. However, you requested ${output} output tokens and your prompt ` +
        `contains ${atLeast}${seen} input tokens, for a total of ${atLeast}${seen + output} tokens. ` +
        'Please reduce the length of the input prompt or the number of requested output tokens.',
      'input_tokens',
      seen,
    );
  }
  const budget = asked ?? maxModelLen - promptTokens;
  if (budget === 0) throw new ContextLengthError('max_tokens must be at least 1, got 0.', 'max_tokens', 0);
  return budget;
}
