import type { Charge } from '../quota/store.js';

/** Envoy's response flags, by their short codes (as Envoy's access logs print them). */
export type ResponseFlag = string;

/**
 * Flags meaning Envoy never sent the request to a model server: no healthy host, connection failure,
 * overflow, no route or cluster, DNS failure, failed local health check, an injected fault, a local
 * rate limit (or its service failing), invalid headers, missing filter config.
 */
export const NOT_FORWARDED_FLAGS: ReadonlySet<ResponseFlag> = new Set(['UH', 'UF', 'UO', 'NR', 'NC', 'DF', 'LH', 'FI', 'RL', 'RLSE', 'IH', 'NFCF']);

/** A finished request as the access log reports it. */
export interface CompletedRequest {
  /** From the Check's dynamic metadata; absent when the Check reserved nothing (denied, or not charged). */
  readonly reservation?: { readonly id: string; readonly user: string; readonly model: string };
  /** The HTTP status sent downstream; 0 when there was none (the stream was reset first). */
  readonly responseCode: number;
  readonly flags: ReadonlySet<ResponseFlag>;
  /** Envoy sent request bytes upstream (time_to_first_upstream_tx_byte is set). */
  readonly sentUpstream: boolean;
  /** Envoy chose an upstream host (upstream_remote_address is set). */
  readonly upstreamHost: boolean;
  /** The response status came from the upstream (response_code_details "via_upstream"), not from Envoy. */
  readonly statusFromUpstream: boolean;
  /** What vLLM reported, as usage.lua read it. */
  readonly usage?: { readonly promptTokens: number; readonly completionTokens: number };
}

export type SettlementRule =
  | 'usage'
  | 'not_forwarded'
  | 'rejected_by_model_server'
  | 'client_gone'
  | 'upstream_timeout'
  | 'upstream_failure'
  | 'usage_missing';

export type Settlement =
  | {
      readonly reservation: NonNullable<CompletedRequest['reservation']>;
      readonly charge: Exclude<Charge, { kind: 'cancel' }>;
      readonly rule: SettlementRule;
      readonly usage?: CompletedRequest['usage'];
    }
  | { readonly ignored: 'not_reserved' };

/**
 * How a finished request is charged. The first rule that matches decides; when in doubt the
 * reservation stands (the model may have generated up to everything reserved, and under-charging
 * is the failure to avoid):
 *
 * | rule                     | when                                                                 | charged        |
 * |--------------------------|----------------------------------------------------------------------|----------------|
 * | usage                    | usage.lua read vLLM's usage                                          | exactly it     |
 * | not_forwarded            | no byte went upstream, and no host was chosen or a flag says it never |                |
 * |                          | could be (NOT_FORWARDED_FLAGS)                                        | nothing        |
 * | rejected_by_model_server | the model server itself answered 4xx, no response flag               | nothing        |
 * | client_gone              | the client went away (DC, DR, or no response code)                   | the reservation|
 * | upstream_timeout         | the route timed out (UT) after forwarding                            | the reservation|
 * | upstream_failure         | a 5xx or a reset after forwarding                                    | the reservation|
 * | usage_missing            | any other answer without usage (a stream without include_usage)      | the reservation|
 *
 * Requests per minute keep the request in every case.
 */
export function settlementFor(request: CompletedRequest): Settlement {
  const { reservation, usage, responseCode, flags } = request;
  if (reservation === undefined) return { ignored: 'not_reserved' };
  const settle = (rule: SettlementRule, charge: Exclude<Charge, { kind: 'cancel' }>): Settlement => ({ reservation, rule, charge });
  if (usage !== undefined) {
    return { reservation, usage, rule: 'usage', charge: { kind: 'actual', tokens: usage.promptTokens + usage.completionTokens } };
  }
  const neverForwarded = !request.sentUpstream && (!request.upstreamHost || [...flags].some((f) => NOT_FORWARDED_FLAGS.has(f)));
  if (neverForwarded) return settle('not_forwarded', { kind: 'nothing' });
  if (responseCode >= 400 && responseCode < 500 && flags.size === 0 && request.statusFromUpstream) {
    return settle('rejected_by_model_server', { kind: 'nothing' });
  }
  if (flags.has('DC') || flags.has('DR') || responseCode === 0) return settle('client_gone', { kind: 'reserved' });
  if (flags.has('UT')) return settle('upstream_timeout', { kind: 'reserved' });
  if (responseCode >= 500 || flags.size > 0) return settle('upstream_failure', { kind: 'reserved' });
  return settle('usage_missing', { kind: 'reserved' });
}
