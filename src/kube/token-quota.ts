import { z } from 'zod';
import { RESERVED_NAMES, type LimitsInput } from '../config/schema.js';
import { LIMIT_NAMES, NESTED_TOKEN_LIMITS, type LimitName } from '../limit-kinds.js';

export const TOKEN_QUOTA_GROUP = 'tokenwarden.dev';
export const TOKEN_QUOTA_VERSION = 'v1alpha1';
export const TOKEN_QUOTA_PLURAL = 'tokenquotas';

/** A TokenQuota as the API server returns it. */
export interface TokenQuotaObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; generation?: number; creationTimestamp?: string | Date; resourceVersion?: string };
  spec?: unknown;
  status?: TokenQuotaStatus;
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

export interface TokenQuotaStatus {
  observedGeneration?: number;
  conditions?: Condition[];
}

const name = (kind: 'user' | 'group' | 'model') =>
  z
    .string()
    .min(1)
    .max(256)
    .refine((n) => !RESERVED_NAMES.has(n), { error: (issue) => `"${String(issue.input)}" is reserved and cannot be a ${kind} name` });
const nonNegative = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

/** The same rules as the CRD's schema and CEL validations (deploy/crds/), checked again here. */
export const tokenQuotaSpecSchema = z
  .object({
    subjects: z
      .object({ users: z.array(name('user')).max(1000).optional(), groups: z.array(name('group')).max(100).optional() })
      .refine((s) => (s.users?.length ?? 0) + (s.groups?.length ?? 0) > 0, 'at least one user or group is required'),
    models: z
      .array(name('model'))
      .min(1)
      .max(100)
      .refine((m) => !m.includes('*') || m.length === 1, '"*" must be the only entry when present'),
    limits: z
      .object(Object.fromEntries(LIMIT_NAMES.map((limit) => [limit, nonNegative.optional()])) as Record<LimitName, ReturnType<typeof nonNegative.optional>>)
      .refine((l) => Object.keys(l).length > 0, 'at least one limit is required')
      .superRefine((l, ctx) => {
        for (const [inner, outer] of NESTED_TOKEN_LIMITS) {
          const [a, b] = [l[inner], l[outer]];
          if (a !== undefined && b !== undefined && a > b) ctx.addIssue({ code: 'custom', message: `${inner} must not exceed ${outer}` });
        }
      }),
    /** Evaluated, counted and reported as "would deny", never denying: how a new quota is rolled out. */
    shadow: z.boolean().optional(),
  })
  .passthrough();

export type TokenQuotaSpec = z.infer<typeof tokenQuotaSpecSchema> & { limits: LimitsInput };


export function parseTokenQuotaSpec(spec: unknown): { spec: TokenQuotaSpec } | { error: string } {
  const parsed = tokenQuotaSpecSchema.safeParse(spec);
  if (parsed.success) return { spec: parsed.data as TokenQuotaSpec };
  return {
    error: parsed.error.issues.map((i) => `spec${i.path.length ? '.' + i.path.join('.') : ''}: ${i.message}`).join('; '),
  };
}

export function objectKey(object: TokenQuotaObject): string {
  return `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
}
