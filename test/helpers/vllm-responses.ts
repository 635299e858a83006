/**
 * Response bodies shaped like vLLM's OpenAI server (a stand-in: no GPU here): a chat completion as
 * JSON, and the same as an SSE stream with per-token chunks and, when asked, the final usage chunk.
 */
export interface Usage {
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
}

const base = (id: string) => ({ id, object: 'chat.completion', created: 1795393477, model: 'llama-3.2-1b' });

export function jsonCompletion(id: string, text: string, usage: Usage): string {
  return JSON.stringify({
    ...base(id),
    choices: [{ index: 0, message: { role: 'assistant', content: text, tool_calls: [] }, logprobs: null, finish_reason: 'stop', stop_reason: null }],
    usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens, prompt_tokens_details: null },
    prompt_logprobs: null,
  });
}

export function sseCompletion(id: string, pieces: readonly string[], usage: Usage | undefined, options: { continuous?: boolean } = {}): string {
  const event = (payload: object) => `data: ${JSON.stringify(payload)}\n\n`;
  const chunk = { ...base(id), object: 'chat.completion.chunk' };
  let body = event({ ...chunk, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] });
  pieces.forEach((piece, i) => {
    const running = usage && options.continuous ? { usage: { prompt_tokens: usage.prompt_tokens, completion_tokens: i + 1, total_tokens: usage.prompt_tokens + i + 1 } } : {};
    body += event({ ...chunk, choices: [{ index: 0, delta: { content: piece }, logprobs: null, finish_reason: i === pieces.length - 1 ? 'stop' : null }], ...running });
  });
  if (usage) {
    body += event({ ...chunk, choices: [], usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens } });
  }
  return body + 'data: [DONE]\n\n';
}
