import type { ConfigSnapshot } from '../config/snapshot.js';
import { CONCURRENCY_LIMIT, counterKind, type LimitName } from '../limit-kinds.js';
import type { Admission, Clock, QuotaEngine } from '../quota/engine.js';
import { StoreUnavailableError, type HitCharge, type QuotaStore } from '../quota/store.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { acceptableUserId } from '../identity/identify.js';
import { reportShadowDenials } from '../telemetry/shadow-denials.js';
import { applyReplaces, unitSeconds, upstreamCacheKey, type DescriptorEntry, type LimitOverride, type RateLimitConfig, type RateLimitRule, type RateLimitUnit } from './config.js';

/** One descriptor of a ShouldRateLimit request. */
export interface RlsDescriptor {
  readonly entries: readonly DescriptorEntry[];
  readonly limit?: LimitOverride;
  /** The descriptor's own hits_addend when Envoy sent one (0 = check only); Infinity when beyond 2^53. */
  readonly hitsAddend?: number;
}

export interface RlsRequest {
  readonly domain: string;
  readonly descriptors: readonly RlsDescriptor[];
  /** The request-level hits_addend; 0 (unset) means 1. */
  readonly hitsAddend: number;
}

export interface RlsStatus {
  readonly code: 'OK' | 'OVER_LIMIT';
  readonly currentLimit?: { readonly requestsPerUnit: number; readonly unit: RateLimitUnit; readonly name?: string };
  readonly limitRemaining: number;
  /** Whole seconds until the window resets. */
  readonly durationUntilResetS?: number;
}

export interface RlsResponse {
  readonly overallCode: 'OK' | 'OVER_LIMIT';
  readonly statuses: readonly RlsStatus[];
  readonly responseHeaders: ReadonlyArray<readonly [string, string]>;
}

/** A request Envoy should never send (no domain, no descriptors): the call fails, as envoyproxy/ratelimit's does. */
export class RlsRequestError extends Error {
  override name = 'RlsRequestError';
}

const UNLIMITED_REMAINING = 4_294_967_295;
const NEAR_LIMIT_RATIO = 0.8;

/** A tokenwarden counter's window as a rate-limit unit (a token descriptor's current_limit), when it is one. */
function unitOfLimit(name: LimitName): RateLimitUnit | undefined {
  if (name === CONCURRENCY_LIMIT.name) return undefined;
  const window = counterKind(name).window;
  if (window.kind === 'calendar') return window.period;
  return ([['minute', 60_000], ['hour', 3_600_000], ['day', 86_400_000]] as const).find(([, ms]) => ms === window.lengthMs)?.[0];
}

/**
 * Envoy's rate-limit service with envoyproxy/ratelimit's semantics: each descriptor is matched to a
 * rule of the loaded configuration, its hits are added to the rule's fixed window (denied hits
 * count, as upstream's do), and it is over limit when the window's total exceeds the rule. A
 * descriptor naming a user and a model in the token domain is charged to that user's token quotas
 * instead, hits being tokens.
 */
export class RateLimitService {
  constructor(
    private readonly deps: {
      readonly rules: () => RateLimitConfig | undefined;
      readonly config: () => ConfigSnapshot;
      readonly store: QuotaStore;
      readonly engine: QuotaEngine;
      readonly clock: Clock;
      readonly metrics: Metrics;
      readonly logger: Logger;
      /** False until a configuration is in force (with --kube, until the first sync). */
      readonly configured?: () => boolean;
      /** Label charged tokens by user too (metrics.userLabel, as the reconciler does). */
      readonly userLabel?: boolean;
    },
  ) {}

  /** Whether the store failed on the last call (its failures are logged when they start and end, not per call). */
  private storeDown = false;

  async shouldRateLimit(request: RlsRequest): Promise<RlsResponse> {
    if (request.domain === '') throw new RlsRequestError('rate limit domain must not be empty');
    if (request.descriptors.length === 0) throw new RlsRequestError('rate limit descriptor list must not be empty');
    const config = this.deps.config();
    if (this.deps.configured && !this.deps.configured()) {
      // Before the first Kubernetes sync nothing is known of the token quotas: refuse, or fail the call when failing open.
      if (config.settings.failOpen) throw new StoreUnavailableError('no limits configuration yet');
      return { overallCode: 'OVER_LIMIT', statuses: request.descriptors.map(() => ({ code: 'OVER_LIMIT', limitRemaining: 0 })), responseHeaders: [] };
    }
    const now = this.deps.clock();
    const nowSeconds = Math.floor(now / 1000);
    const hits = request.descriptors.map((d) => d.hitsAddend ?? Math.max(1, request.hitsAddend));
    const tokenScopes = request.descriptors.map((d) => this.tokenScope(config, request.domain, d.entries));
    const rules = applyReplaces(
      request.descriptors.map((d, i) => (tokenScopes[i] !== undefined ? undefined : this.deps.rules()?.match(request.domain, d.entries, d.limit))),
    );

    const counted = rules.flatMap((rule, i) => (rule !== undefined && !rule.unlimited && Number.isSafeInteger(hits[i]) ? [i] : []));
    const charges: HitCharge[] = counted.map((i) => ({
      counter: upstreamCacheKey('', request.domain, request.descriptors[i]!.entries, rules[i]!, nowSeconds),
      hits: hits[i]!,
      ttlMs: unitSeconds(rules[i]!.unit!) * 1000,
    }));
    const [totals, tokenAdmissions] = await Promise.all([
      this.addHits(charges, config),
      Promise.all(
        tokenScopes.map((scope, i) => (scope === undefined ? undefined : scope === 'unknown-model' ? ('refused' as const) : this.chargeTokens(scope, hits[i]!, config))),
      ),
    ]);

    const statuses = rules.map((rule, i): RlsStatus => {
      const admission = tokenAdmissions[i];
      if (admission !== undefined) return tokenStatus(admission);
      if (rule === undefined) return { code: 'OK', limitRemaining: 0 };
      if (rule.unlimited) return { code: 'OK', limitRemaining: UNLIMITED_REMAINING };
      const slot = counted.indexOf(i);
      // A total beyond what can be counted exactly (hits above 2^53) exceeds any limit.
      const after = slot < 0 ? Infinity : totals === 'unavailable' ? Infinity : totals[slot]!;
      this.recordStats(rule, hits[i]!, after);
      const over = after > rule.requestsPerUnit;
      const seconds = unitSeconds(rule.unit!);
      return {
        code: over && !rule.shadowMode ? 'OVER_LIMIT' : 'OK',
        currentLimit: { requestsPerUnit: rule.requestsPerUnit, unit: rule.unit!, ...(rule.name !== undefined ? { name: rule.name } : {}) },
        limitRemaining: over ? 0 : rule.requestsPerUnit - after,
        durationUntilResetS: seconds - (nowSeconds % seconds),
      };
    });
    // An unlimited rule is never a quota descriptor (upstream answers it before quota mode is looked at).
    const quota = rules.map((rule) => rule?.quotaMode === true && !rule.unlimited);
    const overall =
      statuses.some((s, i) => s.code === 'OVER_LIMIT' && !quota[i]) ||
      (quota.some(Boolean) && statuses.every((s, i) => !quota[i] || s.code === 'OVER_LIMIT'))
        ? 'OVER_LIMIT'
        : 'OK';
    this.deps.metrics.rateLimitDecisions.inc({ domain: this.domainLabel(request.domain), result: overall === 'OK' ? 'ok' : 'over_limit' });
    return { overallCode: overall, statuses, responseHeaders: config.settings.rateLimitService.responseHeaders ? rateLimitHeaders(statuses) : [] };
  }

  /**
   * The user and model a descriptor in the token domain names, or undefined for any other
   * descriptor. A model tokenwarden does not serve is over limit, as ext_authz refuses it.
   */
  private tokenScope(config: ConfigSnapshot, domain: string, entries: readonly DescriptorEntry[]): { user: string; model: string } | 'unknown-model' | undefined {
    const tokens = config.settings.rateLimitService.tokenDescriptors;
    if (tokens === undefined || domain !== tokens.domain) return undefined;
    const user = entries.find((e) => e.key === tokens.userKey)?.value;
    const model = entries.find((e) => e.key === tokens.modelKey)?.value;
    if (user === undefined || model === undefined || user === '') return undefined;
    // Refused like an unknown model: a name ext_authz would never accept must not get counters (or reports) of its own.
    return config.hasModel(model) && acceptableUserId(user) ? { user, model } : 'unknown-model';
  }

  /** The windows' totals, or 'unavailable' when the store failed and the configuration fails closed. */
  private async addHits(charges: readonly HitCharge[], config: ConfigSnapshot): Promise<number[] | 'unavailable'> {
    if (charges.length === 0) return [];
    try {
      const totals = await this.deps.store.addHits(charges);
      this.onStoreAnswered();
      return totals;
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      this.onStoreError(err, config);
      return 'unavailable';
    }
  }

  private async chargeTokens(scope: { user: string; model: string }, tokens: number, config: ConfigSnapshot): Promise<Admission | 'refused'> {
    // Beyond 2^53 tokens cannot be counted exactly, and exceed any quota.
    if (!Number.isSafeInteger(tokens)) return 'refused';
    try {
      const admission = await this.deps.engine.charge({ ...scope, groups: [], tokens });
      this.onStoreAnswered();
      if (admission.admitted) reportShadowDenials(this.deps, { ...scope, wouldDeny: admission.wouldDeny, via: 'ratelimit' });
      // Charged whether or not it fit (counted first, compared after), as the reports count it.
      if (tokens > 0) this.deps.metrics.tokensCharged.inc({ kind: 'descriptor', model: scope.model, ...(this.deps.userLabel ? { user: scope.user } : {}) }, tokens);
      return admission;
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      this.onStoreError(err, config);
      return 'refused';
    }
  }

  /** Fails the call when the configuration says fail open (Envoy's failure_mode_deny decides); otherwise the descriptors are over limit. */
  private onStoreError(err: StoreUnavailableError, config: ConfigSnapshot): void {
    this.deps.metrics.storeErrors.inc({ operation: 'rate_limit' });
    if (!this.storeDown) this.deps.logger.warn({ err: err.message, failOpen: config.settings.failOpen }, 'quota store unavailable to the rate-limit service');
    this.storeDown = true;
    if (config.settings.failOpen) throw err;
  }

  private onStoreAnswered(): void {
    if (this.storeDown) this.deps.logger.info('quota store available to the rate-limit service again');
    this.storeDown = false;
  }

  /** envoyproxy/ratelimit's per-rule stats, in hits (total_hits, over_limit, near_limit, within_limit, shadow_mode). */
  private recordStats(rule: RateLimitRule, hits: number, after: number): void {
    const stats = this.deps.metrics.rateLimitHits;
    const labels = (stat: string) => ({ rule: rule.ruleKey, stat });
    const add = (stat: string, amount: number) => amount > 0 && Number.isFinite(amount) && stats.inc(labels(stat), amount);
    const limit = rule.requestsPerUnit;
    const before = after - hits;
    const threshold = Math.floor(limit * NEAR_LIMIT_RATIO);
    add('total_hits', hits);
    if (after > limit) {
      const overBy = before >= limit ? hits : after - limit;
      add('over_limit', overBy);
      add('near_limit', limit - Math.max(threshold, before));
      if (rule.shadowMode) add('shadow_mode', overBy);
    } else {
      add('within_limit', hits);
      add('near_limit', after - Math.max(threshold, before));
    }
  }

  private domainLabel(domain: string): string {
    return this.deps.rules()?.hasDomain(domain) || domain === this.deps.config().settings.rateLimitService.tokenDescriptors?.domain ? domain : '(unknown)';
  }
}

/** A token descriptor's status: the limit that denied it, or the tightest window it was charged in. */
function tokenStatus(admission: Admission | 'refused'): RlsStatus {
  if (admission === 'refused') return { code: 'OVER_LIMIT', limitRemaining: 0 };
  const state = admission.view.tokens ?? admission.view.requests;
  const unit = state === undefined ? undefined : unitOfLimit(state.name);
  const currentLimit = state !== undefined && unit !== undefined ? { requestsPerUnit: state.limit, unit, name: state.name } : undefined;
  if (!admission.admitted) {
    const resetMs = admission.retryAfterMs ?? state?.resetMs ?? 0;
    return { code: 'OVER_LIMIT', ...(currentLimit ? { currentLimit } : {}), limitRemaining: 0, durationUntilResetS: Math.ceil(resetMs / 1000) };
  }
  if (state === undefined || currentLimit === undefined) return { code: 'OK', limitRemaining: UNLIMITED_REMAINING };
  return { code: 'OK', currentLimit, limitRemaining: state.remaining, durationUntilResetS: Math.ceil(state.resetMs / 1000) };
}

/**
 * The x-ratelimit-* headers as Envoy's enable_x_ratelimit_headers (DRAFT_VERSION_03) writes them: the
 * status with the least remaining decides, and x-ratelimit-limit lists every limit with its window.
 */
function rateLimitHeaders(statuses: readonly RlsStatus[]): Array<readonly [string, string]> {
  const limited = statuses.filter((s) => s.currentLimit !== undefined);
  const chosen = limited.reduce<RlsStatus | undefined>((best, s) => (best === undefined || s.limitRemaining < best.limitRemaining ? s : best), undefined);
  if (chosen === undefined) return [];
  const policies = limited.map(({ currentLimit: l }) => `${l!.requestsPerUnit};w=${unitSeconds(l!.unit)}${l!.name === undefined ? '' : `;name="${l!.name}"`}`);
  return [
    ['x-ratelimit-limit', [String(chosen.currentLimit!.requestsPerUnit), ...policies].join(', ')],
    ['x-ratelimit-remaining', String(chosen.limitRemaining)],
    ['x-ratelimit-reset', String(chosen.durationUntilResetS ?? 0)],
  ];
}
