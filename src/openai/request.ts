/** What tokenwarden needs from an OpenAI-style chat-completions or completions request body. */
export interface OpenAIRequest {
  readonly kind: 'chat' | 'completion';
  readonly model: string | undefined;
  /** max_completion_tokens, else max_tokens; undefined when the client set neither. */
  readonly maxTokens: number | undefined;
  /** How many completions (choices) the request asks for: each may use up to maxTokens. */
  readonly choices: number;
  readonly stream: boolean;
  /** The parsed body, for the token counter (messages, prompt, tools, ...). */
  readonly body: Readonly<Record<string, unknown>>;
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

/** Parses a request body. Throws BadRequestError with a message fit to show the client. */
export function parseOpenAIRequest(bodyText: string, path: string): OpenAIRequest {
  let body: unknown;
  try {
    body = JSON.parse(bodyText);
  } catch {
    throw new BadRequestError('The request body is not valid JSON.');
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new BadRequestError('The request body must be a JSON object.');
  }
  const fields = body as Record<string, unknown>;

  const model = fields['model'];
  if (model !== undefined && (typeof model !== 'string' || model.length === 0 || model.length > MAX_MODEL_NAME_LENGTH)) {
    throw new BadRequestError(`'model' must be a non-empty string of at most ${MAX_MODEL_NAME_LENGTH} characters.`, 'model');
  }

  const maxTokens = readMaxTokens(fields, 'max_completion_tokens') ?? readMaxTokens(fields, 'max_tokens');
  const n = fields['n'];
  if (n !== undefined && n !== null && (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1 || n > MAX_CHOICES)) {
    throw new BadRequestError(`'n' must be an integer from 1 to ${MAX_CHOICES}.`, 'n');
  }
  const stream = fields['stream'];
  if (stream !== undefined && stream !== null && typeof stream !== 'boolean') {
    throw new BadRequestError("'stream' must be a boolean.", 'stream');
  }

  return {
    kind: requestKind(path, fields),
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
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new BadRequestError(`'${name}' must be a non-negative integer.`, name);
  }
  return value;
}

function requestKind(path: string, fields: Record<string, unknown>): 'chat' | 'completion' {
  const pathOnly = path.split('?', 1)[0] ?? '';
  if (pathOnly.endsWith('/chat/completions')) return 'chat';
  if (pathOnly.endsWith('/completions')) return 'completion';
  return fields['messages'] !== undefined ? 'chat' : 'completion';
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
