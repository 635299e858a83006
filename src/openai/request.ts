import { MAX_TOKEN_COUNT } from '../config/schema.js';

/** What tokenwarden needs from an OpenAI-style chat-completions or completions request body. */
export interface OpenAIRequest {
  readonly kind: 'chat' | 'completion';
  readonly model: string | undefined;
  /**
   * The completion tokens asked for, as vLLM reads them: `max_completion_tokens or max_tokens` with
   * Python truthiness (0 counts as absent); for completions an absent max_tokens is vLLM's default 16
   * (an explicit null may mean 16 or the whole remaining context, depending on vLLM's version: the
   * larger is reserved).
   * Undefined: the model may generate up to its remaining context.
   */
  readonly maxTokens: number | undefined;
  /** How many completions (choices) the request asks for: each may use up to maxTokens. */
  readonly choices: number;
  readonly stream: boolean;
  /** The parsed body, for the token counter (messages, prompt, tools, ...). */
  readonly body: Readonly<Record<string, unknown>>;
  /** The body as received: equal texts parse to equal requests, so it keys caches exactly. */
  readonly bodyText: string;
}

export class BadRequestError extends Error {
  override name = 'BadRequestError';
  constructor(
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

const MAX_MODEL_NAME_LENGTH = 256;
const MAX_CHOICES = 128;
/** Deeper JSON is refused before anything walks it (templates, the counter): no real request nests this deep. */
export const MAX_JSON_DEPTH = 64;
/** vLLM's CompletionRequest default for an absent max_tokens. */
const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;

export type RequestKind = OpenAIRequest['kind'];

/**
 * The metered endpoint a path names (…/chat/completions or …/completions), or undefined: any other
 * endpoint (say /v1/responses) reads fields tokenwarden does not count, so it is never admitted.
 */
export function endpointKind(path: string): RequestKind | undefined {
  const pathOnly = path.split('?', 1)[0] ?? '';
  if (pathOnly.endsWith('/chat/completions')) return 'chat';
  if (pathOnly.endsWith('/completions')) return 'completion';
  return undefined;
}

/**
 * Parses a request body for an endpoint of `kind` (or, for /v1/tokenize, the kind the body has:
 * messages make it a chat request). Throws BadRequestError with a message fit to show the client.
 */
export function parseOpenAIRequest(bodyText: string, kind: RequestKind | 'by-body'): OpenAIRequest {
  let body: unknown;
  try {
    body = JSON.parse(bodyText);
  } catch {
    throw new BadRequestError('The request body is not valid JSON.');
  }
  if (jsonDepth(body) > MAX_JSON_DEPTH) {
    throw new BadRequestError(`The request body nests JSON more than ${MAX_JSON_DEPTH} levels deep.`);
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new BadRequestError('The request body must be a JSON object.');
  }
  const fields = body as Record<string, unknown>;

  const model = fields['model'];
  if (model !== undefined && (typeof model !== 'string' || model.length === 0 || model.length > MAX_MODEL_NAME_LENGTH)) {
    throw new BadRequestError(`'model' must be a non-empty string of at most ${MAX_MODEL_NAME_LENGTH} characters.`, 'model');
  }

  const endpoint = kind === 'by-body' ? (fields['messages'] !== undefined ? 'chat' : 'completion') : kind;
  // Python's `or`: a 0 (or null) falls through to the next, and a final 0 means "not given".
  const maxCompletionTokens = readMaxTokens(fields, 'max_completion_tokens');
  const maxTokensField = readMaxTokens(fields, 'max_tokens') ?? (endpoint === 'completion' && !Object.hasOwn(fields, 'max_tokens') ? COMPLETIONS_DEFAULT_MAX_TOKENS : undefined);
  const maxTokens = maxCompletionTokens || maxTokensField || undefined;
  const n = fields['n'];
  if (n !== undefined && n !== null && (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1 || n > MAX_CHOICES)) {
    throw new BadRequestError(`'n' must be an integer from 1 to ${MAX_CHOICES}.`, 'n');
  }
  const stream = fields['stream'];
  if (stream !== undefined && stream !== null && typeof stream !== 'boolean') {
    throw new BadRequestError("'stream' must be a boolean.", 'stream');
  }

  return {
    bodyText,
    kind: endpoint,
    model: model as string | undefined,
    maxTokens,
    choices: typeof n === 'number' ? n : 1,
    stream: stream === true,
    body: fields,
  };
}

function readMaxTokens(fields: Record<string, unknown>, name: string): number | undefined {
  const value = fields[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > MAX_TOKEN_COUNT) {
    throw new BadRequestError(`'${name}' must be an integer from 0 to ${MAX_TOKEN_COUNT}.`, name);
  }
  return value;
}

/** How deeply arrays and objects nest, measured without recursion (the input may be hostile). */
export function jsonDepth(value: unknown): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!;
    if (current === null || typeof current !== 'object') continue;
    deepest = Math.max(deepest, depth + 1);
    if (deepest > MAX_JSON_DEPTH) return deepest;
    for (const child of Object.values(current)) stack.push([child, depth + 1]);
  }
  return deepest;
}

/** The model named by a path of the form /api/v1/models/{model}/..., if any. */
export function modelFromPath(path: string): string | undefined {
  const pathOnly = path.split('?', 1)[0] ?? '';
  const match = /^\/api\/v1\/models\/([^/]+)(?:\/|$)/.exec(pathOnly);
  if (!match?.[1]) return undefined;
  try {
    const model = decodeURIComponent(match[1]);
    return model.length > 0 && model.length <= MAX_MODEL_NAME_LENGTH ? model : undefined;
  } catch {
    return undefined;
  }
}
