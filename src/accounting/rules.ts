import type { Charge } from '../quota/store.js';

/** A finished request as the access log reports it. */
export interface CompletedRequest {
  /** From the Check's dynamic metadata; absent when the Check reserved nothing (denied, or not charged). */
  readonly reservation?: { readonly id: string; readonly user: string; readonly model: string };
  /** The HTTP status sent downstream; 0 when there was none (the stream was reset first). */
  readonly responseCode: number;
  /** What vLLM reported, as usage.lua read it. */
  readonly usage?: { readonly promptTokens: number; readonly completionTokens: number };
}

export type SettlementRule = 'usage' | 'upstream_failure' | 'rejected_by_model_server' | 'usage_missing';

export type Settlement =
  | {
      readonly reservation: NonNullable<CompletedRequest['reservation']>;
      readonly charge: Charge;
      readonly rule: SettlementRule;
      readonly usage?: CompletedRequest['usage'];
    }
  | { readonly ignored: 'not_reserved' };

/**
 * How a finished request is charged:
 * - usage reported: exactly prompt + completion tokens;
 * - no usage, and no response or a 5xx: the prompt only (the model read it, then failed);
 * - no usage and a 4xx: nothing (vLLM refused the request before generating anything);
 * - no usage and a 2xx: the reservation as it stands — a streamed response without usage, or a
 *   client that went away mid-stream; the real count is unknowable, and under-charging is the
 *   failure to avoid.
 */
export function settlementFor(request: CompletedRequest): Settlement {
  const { reservation, usage, responseCode } = request;
  if (reservation === undefined) return { ignored: 'not_reserved' };
  if (usage !== undefined) {
    return { reservation, usage, rule: 'usage', charge: { kind: 'actual', tokens: usage.promptTokens + usage.completionTokens } };
  }
  if (responseCode === 0 || responseCode >= 500) return { reservation, rule: 'upstream_failure', charge: { kind: 'prompt' } };
  if (responseCode >= 400) return { reservation, rule: 'rejected_by_model_server', charge: { kind: 'nothing' } };
  return { reservation, rule: 'usage_missing', charge: { kind: 'reserved' } };
}
