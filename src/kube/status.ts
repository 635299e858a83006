import type { QuotaVerdict } from './merge.js';
import type { Condition, TokenQuotaObject, TokenQuotaStatus } from './token-quota.js';

/**
 * The status a TokenQuota should have, following the API conventions: conditions keyed by type
 * (Ready, Conflicted), each with the generation it describes, and lastTransitionTime moving only
 * when the condition's status flips.
 */
export function desiredStatus(object: TokenQuotaObject, verdict: QuotaVerdict, nowIso: string): TokenQuotaStatus {
  const generation = object.metadata?.generation ?? 0;
  const previous = new Map((object.status?.conditions ?? []).map((c) => [c.type, c]));
  const condition = (type: string, status: Condition['status'], reason: string, message: string): Condition => {
    const before = previous.get(type);
    return {
      type,
      status,
      reason,
      message,
      observedGeneration: generation,
      lastTransitionTime: before?.status === status ? before.lastTransitionTime : nowIso,
    };
  };
  const conflicted = verdict.conflicts.length > 0;
  return {
    observedGeneration: generation,
    conditions: [
      condition('Ready', verdict.ready ? 'True' : 'False', verdict.reason, verdict.message),
      condition('Conflicted', conflicted ? 'True' : 'False', conflicted ? 'OverlappingQuotas' : 'NoConflicts', verdict.conflicts.join('; ')),
    ],
  };
}

export function sameStatus(a: TokenQuotaStatus | undefined, b: TokenQuotaStatus): boolean {
  return JSON.stringify(a ?? {}) === JSON.stringify(b);
}
