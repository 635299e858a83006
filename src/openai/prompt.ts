import { BadRequestError, type OpenAIRequest } from './request.js';

/**
 * What the model server tokenizes for a request, following vLLM's OpenAI server:
 * - chat: the chat template rendered with these variables, tokenized without special tokens
 *   (unless the request sets add_special_tokens), because the template writes them itself;
 * - completions: each prompt string tokenized with special tokens (BOS), or token ids counted as given.
 */
export type Prompt =
  | {
      readonly kind: 'chat';
      readonly templateVariables: Record<string, unknown>;
      /** Cut the rendering right after the last message's text, so the model continues it. */
      readonly continueFinalMessage: boolean;
      readonly addSpecialTokens: boolean;
    }
  | {
      readonly kind: 'completion';
      /** One entry per prompt vLLM will complete: a text to tokenize, or the number of token ids given. */
      readonly sequences: ReadonlyArray<string | number>;
      readonly addSpecialTokens: boolean;
    };

export function promptOf(request: OpenAIRequest): Prompt {
  const body = request.body;
  const addSpecialTokens = optionalBoolean(body, 'add_special_tokens');
  if (request.kind === 'chat') {
    const variables: Record<string, unknown> = {
      messages: normalizeMessages(body['messages']),
      add_generation_prompt: optionalBoolean(body, 'add_generation_prompt') ?? true,
    };
    const tools = normalizeTools(body['tools']);
    if (tools !== undefined) variables['tools'] = tools;
    if (Array.isArray(body['documents'])) variables['documents'] = body['documents'];
    const kwargs = body['chat_template_kwargs'];
    if (kwargs !== undefined && kwargs !== null) {
      if (typeof kwargs !== 'object' || Array.isArray(kwargs)) throw new BadRequestError("'chat_template_kwargs' must be an object.", 'chat_template_kwargs');
      Object.assign(variables, kwargs);
    }
    return {
      kind: 'chat',
      templateVariables: variables,
      continueFinalMessage: optionalBoolean(body, 'continue_final_message') ?? false,
      addSpecialTokens: addSpecialTokens ?? false,
    };
  }
  return { kind: 'completion', sequences: completionPrompts(body['prompt']), addSpecialTokens: addSpecialTokens ?? true };
}

function optionalBoolean(body: Readonly<Record<string, unknown>>, name: string): boolean | undefined {
  const value = body[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw new BadRequestError(`'${name}' must be a boolean.`, name);
  return value;
}

/**
 * Messages as vLLM hands them to a template that expects string content: text parts joined with
 * "\n"; tool-call arguments parsed from their JSON strings. Other parts (images, audio) are refused:
 * the models served here read text only, as vLLM would refuse them for a text-only model.
 */
function normalizeMessages(messages: unknown): Array<Record<string, unknown>> {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new BadRequestError("'messages' must be a non-empty array.", 'messages');
  }
  return messages.map((message, i) => {
    if (message === null || typeof message !== 'object' || Array.isArray(message)) {
      throw new BadRequestError(`'messages[${i}]' must be an object.`, `messages[${i}]`);
    }
    const { role, content, tool_calls: toolCalls, ...rest } = message as Record<string, unknown>;
    if (typeof role !== 'string') throw new BadRequestError(`'messages[${i}].role' must be a string.`, `messages[${i}].role`);
    const normalized: Record<string, unknown> = { role, content: messageText(content, i), ...rest };
    if (toolCalls !== undefined && toolCalls !== null) normalized['tool_calls'] = normalizeToolCalls(toolCalls, i);
    return normalized;
  });
}

function messageText(content: unknown, i: number): string {
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw new BadRequestError(`'messages[${i}].content' must be a string or an array of parts.`, `messages[${i}].content`);
  return content
    .map((part, j) => {
      const p = part as { type?: unknown; text?: unknown } | null;
      if (typeof part === 'string') return part;
      if (p?.type === 'text' && typeof p.text === 'string') return p.text;
      const type = typeof p?.type === 'string' ? p.type : 'unknown';
      throw new BadRequestError(`'messages[${i}].content[${j}]' is a '${type}' part; this model accepts text only.`, `messages[${i}].content`);
    })
    .join('\n');
}

function normalizeToolCalls(toolCalls: unknown, i: number): unknown[] {
  if (!Array.isArray(toolCalls)) throw new BadRequestError(`'messages[${i}].tool_calls' must be an array.`, `messages[${i}].tool_calls`);
  return toolCalls.map((call) => {
    const fn = (call as { function?: { arguments?: unknown } } | null)?.function;
    if (!fn || typeof fn.arguments !== 'string') return call;
    let args: unknown;
    try {
      args = JSON.parse(fn.arguments);
    } catch {
      throw new BadRequestError(`'messages[${i}].tool_calls' has arguments that are not valid JSON.`, `messages[${i}].tool_calls`);
    }
    return { ...(call as object), function: { ...fn, arguments: args } };
  });
}

/** Tools as vLLM's request model dumps them: every declared field present, absent ones as null. */
function normalizeTools(tools: unknown): unknown[] | undefined {
  if (tools === undefined || tools === null) return undefined;
  if (!Array.isArray(tools)) throw new BadRequestError("'tools' must be an array.", 'tools');
  return tools.map((tool, i) => {
    const fn = (tool as { function?: Record<string, unknown> } | null)?.function;
    if (!fn || typeof fn['name'] !== 'string') throw new BadRequestError(`'tools[${i}].function.name' must be a string.`, 'tools');
    return {
      type: (tool as { type?: unknown }).type ?? 'function',
      function: { name: fn['name'], description: fn['description'] ?? null, parameters: fn['parameters'] ?? null },
    };
  });
}

function completionPrompts(prompt: unknown): Array<string | number> {
  const isIds = (v: unknown): v is number[] => Array.isArray(v) && v.every((x) => Number.isInteger(x));
  if (typeof prompt === 'string') return [prompt];
  if (Array.isArray(prompt) && prompt.length > 0) {
    if (prompt.every((p) => typeof p === 'string')) return prompt as string[];
    if (isIds(prompt)) return [prompt.length];
    if (prompt.every(isIds)) return (prompt as number[][]).map((ids) => ids.length);
  }
  throw new BadRequestError("'prompt' must be a string, an array of strings, or token ids.", 'prompt');
}
