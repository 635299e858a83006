import type { LimitState, RateLimitView } from '../quota/engine.js';

/** OpenAI's error body: {"error": {"message", "type", "param", "code"}}. */
export interface OpenAIError {
  readonly message: string;
  readonly type: string;
  readonly param: string | null;
  /** OpenAI writes a string; vLLM writes the HTTP status. */
  readonly code: string | number | null;
}

export function errorBody(error: OpenAIError): string {
  return JSON.stringify({ error: error });
}

/** A duration the way OpenAI writes x-ratelimit-reset-*: "20ms", "1.5s", "6m0s", "1h2m3s". */
export function formatResetDuration(ms: number): string {
  const whole = Math.max(0, Math.ceil(ms));
  if (whole < 1000) return `${whole}ms`;
  if (whole < 60_000) return `${Number((whole / 1000).toFixed(3))}s`;
  const totalSeconds = Math.ceil(whole / 1000);
  const hours = Math.floor(totalSeconds / 3600);
  const minutes = Math.floor((totalSeconds % 3600) / 60);
  const seconds = totalSeconds % 60;
  return hours > 0 ? `${hours}h${minutes}m${seconds}s` : `${minutes}m${seconds}s`;
}

/** retry-after in whole seconds, never 0 (a client would retry at once). */
export function retryAfterSeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

/** OpenAI's x-ratelimit-{limit,remaining,reset}-{tokens,requests} headers for whatever the view holds. */
export function rateLimitHeaders(view: RateLimitView): Record<string, string> {
  const headers: Record<string, string> = {};
  const put = (kind: 'tokens' | 'requests', state: LimitState | undefined) => {
    if (state === undefined) return;
    headers[`x-ratelimit-limit-${kind}`] = String(state.limit);
    headers[`x-ratelimit-remaining-${kind}`] = String(state.remaining);
    headers[`x-ratelimit-reset-${kind}`] = formatResetDuration(state.resetMs);
  };
  put('tokens', view.tokens);
  put('requests', view.requests);
  return headers;
}
