import type { ConfigSnapshot, EffectiveLimits } from '../config/snapshot.js';
import type { UsageObserver } from '../reports/usage-reports.js';
import { COUNTER_KINDS, CONCURRENCY_LIMIT, type CounterKind, type CounterName, type LimitName } from '../limit-kinds.js';
import { newAttempt, reservationIdFor } from './reservation-ids.js';
import type { Charge, CounterCharge, QuotaStore, Scope, SettleOutcome } from './store.js';
import { countedSum, msUntilEmpty, msUntilFits, windowOf, type Buckets, type Window } from './windows.js';

export type Clock = () => number;

/** A limit's state as OpenAI's x-ratelimit-* headers describe it. */
export interface LimitState {
  readonly name: LimitName;
  readonly limit: number;
  readonly remaining: number;
  /** Time until the limit is back to its full value. */
  readonly resetMs: number;
}

export interface RateLimitView {
  readonly tokens?: LimitState;
  readonly requests?: LimitState;
}

/** What one admission costs: tokens in every token window, one request, one concurrency slot. */
export interface AdmissionRequest {
  readonly user: string;
  /** Groups the caller belongs to (from a JWT), for group limits. */
  readonly groups: readonly string[];
  readonly model: string;
  /** The tokens to reserve: the prompt plus every completion the model may generate. */
  readonly tokens: number;
  /** The part of `tokens` that is prompt, kept with the reservation for reporting. */
  readonly promptTokens: number;
  /** Envoy's x-request-id. */
  readonly requestId: string | undefined;
}

export type Admission =
  | {
      readonly admitted: true;
      readonly reservationId: string;
      /** Identifies this admission to `cancel`. */
      readonly attempt: string;
      readonly reservedTokens: number;
      readonly view: RateLimitView;
      /** Every limited counter's state after this admission (the view keeps only the tightest of each kind). */
      readonly windows: readonly LimitState[];
      /** Shadow-mode limits this admission went over: they would have denied it. */
      readonly wouldDeny: readonly LimitName[];
    }
  | {
      readonly admitted: false;
      readonly limit: LimitName;
      readonly limitValue: number;
      /** What this request asked of the denying limit (tokens, or 1 request). */
      readonly requested: number;
      /** Undefined when the request can never fit: it alone exceeds the limit. */
      readonly retryAfterMs: number | undefined;
      /** The nominal length of the denying limit's window. */
      readonly windowMs: number;
      readonly view: RateLimitView;
    };

export interface WindowUsage {
  readonly window: CounterName;
  readonly used: number;
  readonly limit: number | null;
  readonly remaining: number | null;
  /** Unix seconds at which the window is back to its full limit. */
  readonly reset: number;
  /** A limit in shadow mode: reported, never denying. */
  readonly shadowLimit?: number;
}

export interface ModelUsage {
  readonly model: string;
  readonly windows: readonly WindowUsage[];
  readonly concurrentRequests: { readonly used: number; readonly limit: number | null; readonly shadowLimit?: number };
}

export interface SettleRequest {
  readonly user: string;
  readonly model: string;
  readonly reservationId: string;
  readonly charge: Exclude<Charge, { kind: 'cancel' }>;
}

const CONCURRENCY_RETRY_MS = 1000;
/** When a reserve failed, its possible reservation is taken back after these delays (until one works). */
const CANCEL_RETRY_DELAYS_MS = [0, 250, 1000, 4000, 15_000];
/** How long a reservation outlives its concurrency lease, waiting for a late access-log entry. */
const RESERVATION_GRACE_MS = 60_000;

interface PlacedCounter {
  readonly kind: CounterKind;
  readonly window: Window;
}

/**
 * Decides admissions: a request is charged its tokens in every token window, one request in every
 * request window, and takes a concurrency lease — all or nothing. Knows nothing of OpenAI or Envoy.
 */
export class QuotaEngine {
  constructor(
    private readonly store: QuotaStore,
    private readonly config: () => ConfigSnapshot,
    private readonly clock: Clock = Date.now,
    /** Told what every settlement charged (the usage reports). */
    private readonly observer?: Pick<UsageObserver, 'settled'>,
  ) {}

  async admit(request: AdmissionRequest): Promise<Admission> {
    return this.admitTo(request, this.counters(this.config()), true);
  }

  /**
   * Charges one request in the request windows only (no tokens, no concurrency slot): for work done
   * on a caller's behalf that is not a model request, such as counting a prompt for them.
   */
  async admitRequestOnly(request: Pick<AdmissionRequest, 'user' | 'groups' | 'model'>): Promise<Admission> {
    const counters = this.counters(this.config()).filter((c) => c.kind.counts === 'requests');
    const admission = await this.admitTo({ ...request, tokens: 0, promptTokens: 0, requestId: undefined }, counters, false);
    if (admission.admitted) {
      await this.settle([{ user: request.user, model: request.model, reservationId: admission.reservationId, charge: { kind: 'nothing' } }]);
    }
    return admission;
  }

  /**
   * Charges a cost the caller states itself (the rate-limit service's token descriptors), the way
   * envoyproxy/ratelimit counts hits: added to every window first, even past a limit, then compared
   * — a cost that does not fit is charged all the same and answered over limit. No concurrency slot,
   * nothing left to settle. 0 tokens only looks: nothing is charged, not even a request.
   */
  async charge(request: Pick<AdmissionRequest, 'user' | 'groups' | 'model' | 'tokens'>): Promise<Admission> {
    const config = this.config();
    const now = this.clock();
    const scope = { user: request.user, model: request.model };
    const counters = this.counters(config);
    const limits = config.limitsFor(request.user, request.model, request.groups);
    const charges = this.chargesFor(counters, limits, request.tokens, now).map((c) => ({ ...c, limit: null }));
    let used: Partial<Record<CounterName, number>>;
    let leasesHeld = 0;
    if (request.tokens === 0) {
      const buckets = await this.store.readCounters(charges.map((c) => ({ scope, name: c.name, oldestCounted: c.oldestCounted })));
      used = Object.fromEntries(charges.map((c, i) => [c.name, countedSum(buckets[i]!)]));
    } else {
      const attempt = newAttempt();
      const id = reservationIdFor(undefined);
      const ttlMs = this.reservationTtlMs(config);
      const reservation = { id, attempt, promptTokens: 0, reservedTokens: request.tokens, nowMs: now, expiresAtMs: now + ttlMs, ttlMs };
      let outcome;
      try {
        outcome = await this.store.reserve({ scope, counters: charges, lease: null, reservation });
      } catch (err) {
        this.cancelEventually(scope, id, attempt);
        throw err;
      }
      if (!outcome.admitted) throw new Error('a charge without limits was refused');
      await this.settle([{ ...scope, reservationId: outcome.reservationId, charge: { kind: 'reserved' } }]);
      used = outcome.used;
      leasesHeld = outcome.leasesHeld;
    }
    for (const [i, { kind, window }] of counters.entries()) {
      const limit = limits[kind.name];
      // With 0 tokens (a look), a window already past its limit is over; otherwise this charge took it past.
      if (limit === undefined || (used[kind.name] ?? 0) <= limit) continue;
      const position = window.positionAt(now);
      const state: LimitState = { name: kind.name, limit, remaining: 0, resetMs: position.expiresAt(position.bucket) - now };
      const view = kind.counts === 'tokens' ? { tokens: state } : { requests: state };
      return { admitted: false, limit: kind.name, limitValue: limit, requested: charges[i]!.cost, retryAfterMs: state.resetMs, windowMs: window.lengthMs, view };
    }
    return {
      admitted: true,
      reservationId: '',
      attempt: '',
      reservedTokens: request.tokens,
      ...this.viewOf(counters, limits, used, now),
      wouldDeny: this.wouldDeny(config, request, counters, used, leasesHeld, false),
    };
  }

  /**
   * A read-only look at the limits no smaller request escapes (requests per minute, concurrency):
   * the denial a request would get from them now, or undefined. Lets a caller skip expensive work
   * (counting a large prompt) for a request that cannot be admitted; the admission decides for real.
   */
  async requestLimitDenial(request: Pick<AdmissionRequest, 'user' | 'groups' | 'model'>): Promise<Extract<Admission, { admitted: false }> | undefined> {
    const config = this.config();
    const now = this.clock();
    const limits = config.limitsFor(request.user, request.model, request.groups);
    const scope = { user: request.user, model: request.model };
    const counters = this.counters(config).filter((c) => c.kind.counts === 'requests' && limits[c.kind.name] !== undefined);
    const positions = counters.map((c) => c.window.positionAt(now));
    const [buckets, leases] = await Promise.all([
      this.store.readCounters(counters.map((c, i) => ({ scope, name: c.kind.name, oldestCounted: positions[i]!.oldestCounted }))),
      limits[CONCURRENCY_LIMIT.name] === undefined ? Promise.resolve(0) : this.store.countLeases(scope, now),
    ]);
    const charges: CounterCharge[] = counters.map((c, i) => ({
      name: c.kind.name,
      limit: limits[c.kind.name]!,
      cost: 1,
      countsTokens: false,
      bucket: positions[i]!.bucket,
      oldestCounted: positions[i]!.oldestCounted,
      ttlMs: 0,
    }));
    const full = charges.findIndex((c, i) => countedSum(buckets[i]!) + c.cost > c.limit!);
    if (full >= 0) return this.denyByCounter(counters, charges, charges[full]!.name, buckets[full]!, now) as Extract<Admission, { admitted: false }>;
    const concurrency = limits[CONCURRENCY_LIMIT.name];
    if (concurrency !== undefined && leases >= concurrency) return denyByConcurrency(concurrency, CONCURRENCY_RETRY_MS) as Extract<Admission, { admitted: false }>;
    return undefined;
  }

  private async admitTo(request: AdmissionRequest, counters: readonly PlacedCounter[], takesSlot: boolean): Promise<Admission> {
    const config = this.config();
    const now = this.clock();
    const limits = config.limitsFor(request.user, request.model, request.groups);
    const charges = this.chargesFor(counters, limits, request.tokens, now);

    // A request that can never fit is refused without asking the store.
    const hopeless = charges.find((c) => c.limit !== null && c.cost > c.limit);
    if (hopeless) return this.denyByCounter(counters, charges, hopeless.name, [], now);
    const concurrency = takesSlot ? limits[CONCURRENCY_LIMIT.name] : undefined;
    if (concurrency === 0) return denyByConcurrency(0, undefined);

    const scope = { user: request.user, model: request.model };
    const attempt = newAttempt();
    const requestedId = reservationIdFor(request.requestId);
    const leaseMs = this.leaseMs(config);
    let outcome;
    try {
      outcome = await this.store.reserve({
        scope,
        counters: charges,
        lease: takesSlot ? { limit: concurrency ?? null, nowMs: now, expiresAtMs: now + leaseMs, ttlMs: leaseMs + RESERVATION_GRACE_MS } : null,
        reservation: {
          id: requestedId,
          attempt,
          promptTokens: request.promptTokens,
          reservedTokens: request.tokens,
          nowMs: now,
          expiresAtMs: now + leaseMs + RESERVATION_GRACE_MS,
          ttlMs: leaseMs + RESERVATION_GRACE_MS,
        },
      });
    } catch (err) {
      // The reservation may have been made and only its reply lost: take it back once the store answers again.
      this.cancelEventually(scope, requestedId, attempt);
      throw err;
    }

    if (!outcome.admitted) {
      const { deniedBy } = outcome;
      if ('lease' in deniedBy) return denyByConcurrency(concurrency ?? 0, deniedBy.earliestExpiryMs - now);
      return this.denyByCounter(counters, charges, deniedBy.counter, deniedBy.buckets, now);
    }

    return {
      admitted: true,
      reservationId: outcome.reservationId,
      attempt,
      reservedTokens: request.tokens,
      ...this.viewOf(counters, limits, outcome.used, now),
      wouldDeny: this.wouldDeny(config, request, counters, outcome.used, outcome.leasesHeld, takesSlot),
    };
  }

  private chargesFor(counters: readonly PlacedCounter[], limits: EffectiveLimits, tokens: number, now: number): CounterCharge[] {
    return counters.map(({ kind, window }) => {
      const position = window.positionAt(now);
      return {
        name: kind.name,
        limit: limits[kind.name] ?? null,
        cost: kind.counts === 'tokens' ? tokens : 1,
        countsTokens: kind.counts === 'tokens',
        bucket: position.bucket,
        oldestCounted: position.oldestCounted,
        ttlMs: position.ttlMs,
      };
    });
  }

  /** The x-ratelimit view of an admission (the tightest token window and the tightest request window), and every limited window's state. */
  private viewOf(
    counters: readonly PlacedCounter[],
    limits: EffectiveLimits,
    used: Partial<Record<CounterName, number>>,
    now: number,
  ): { view: RateLimitView; windows: LimitState[] } {
    let tokens: LimitState | undefined;
    let requests: LimitState | undefined;
    const windows: LimitState[] = [];
    for (const { kind, window } of counters) {
      const limit = limits[kind.name];
      if (limit === undefined) continue;
      const position = window.positionAt(now);
      const state = { name: kind.name, limit, remaining: Math.max(0, limit - (used[kind.name] ?? 0)), resetMs: position.expiresAt(position.bucket) - now };
      windows.push(state);
      if (kind.counts === 'tokens') tokens = tokens === undefined || state.remaining < tokens.remaining ? state : tokens;
      else requests = requests === undefined || state.remaining < requests.remaining ? state : requests;
    }
    return { view: { ...(tokens ? { tokens } : {}), ...(requests ? { requests } : {}) }, windows };
  }

  /** Shadow-mode limits the counts after an admission went over. */
  private wouldDeny(
    config: ConfigSnapshot,
    request: Pick<AdmissionRequest, 'user' | 'groups' | 'model'>,
    counters: readonly PlacedCounter[],
    used: Partial<Record<CounterName, number>>,
    leasesHeld: number,
    tookSlot: boolean,
  ): LimitName[] {
    const shadow = config.shadowLimitsFor(request.user, request.model, request.groups);
    const over: LimitName[] = counters
      .filter(({ kind }) => shadow[kind.name] !== undefined && (used[kind.name] ?? 0) > shadow[kind.name]!)
      .map(({ kind }) => kind.name);
    const concurrency = shadow[CONCURRENCY_LIMIT.name];
    if (tookSlot && concurrency !== undefined && leasesHeld > concurrency) over.push(CONCURRENCY_LIMIT.name);
    return over;
  }

  /** Takes back an admission that never took effect (its caller went away): it costs nothing. */
  async cancel(scope: Scope, reservationId: string, attempt: string): Promise<SettleOutcome> {
    const [outcome] = await this.store.settle([
      { scope, reservationId, charge: { kind: 'cancel', attempt }, nowMs: this.clock(), tombstoneTtlMs: this.reservationTtlMs(this.config()) },
    ]);
    return outcome!;
  }

  private cancelEventually(scope: Scope, reservationId: string, attempt: string): void {
    const retry = (delays: readonly number[]) => {
      const [delay, ...later] = delays;
      if (delay === undefined) return;
      setTimeout(() => void this.cancel(scope, reservationId, attempt).catch(() => retry(later)), delay).unref();
    };
    retry(CANCEL_RETRY_DELAYS_MS);
  }

  /** Settles reservations with what the requests really used (or a rule's stand-in), at most once each. */
  async settle(requests: readonly SettleRequest[]): Promise<SettleOutcome[]> {
    const now = this.clock();
    const tombstoneTtlMs = this.reservationTtlMs(this.config());
    const outcomes = await this.store.settle(
      requests.map((r) => ({ scope: { user: r.user, model: r.model }, reservationId: r.reservationId, charge: r.charge, nowMs: now, tombstoneTtlMs })),
    );
    // A settlement that charges nothing was no model request (a counted prompt, a request that never reached the model).
    const served = requests.flatMap((r, i) => {
      const outcome = outcomes[i]!;
      if (outcome.status !== 'settled' || r.charge.kind === 'nothing') return [];
      // In the periods the quota charged: those of the admission, not of the settlement (a stream across midnight).
      return [{ user: r.user, model: r.model, tokens: outcome.chargedTokens, atMs: outcome.admittedAtMs ?? now }];
    });
    if (served.length > 0) this.observer?.settled(served);
    return outcomes;
  }

  /** Usage of one user for each configured model (or just `onlyModel`), with the limits of a member of `groups`. */
  async usage(user: string, onlyModel?: string, groups: readonly string[] = []): Promise<ModelUsage[]> {
    const config = this.config();
    const now = this.clock();
    const counters = this.counters(config).map((c) => ({ ...c, position: c.window.positionAt(now) }));
    const models = onlyModel === undefined ? config.modelNames : [onlyModel];
    const buckets = await this.store.readCounters(
      models.flatMap((model) => counters.map((c) => ({ scope: { user, model }, name: c.kind.name, oldestCounted: c.position.oldestCounted }))),
    );
    const leases = await Promise.all(models.map((model) => this.store.countLeases({ user, model }, now)));
    let next = 0;
    return models.map((model, i) => {
      const limits: EffectiveLimits = config.limitsFor(user, model, groups);
      const shadow: EffectiveLimits = config.shadowLimitsFor(user, model, groups);
      const shadowOf = (name: LimitName) => (shadow[name] === undefined ? {} : { shadowLimit: shadow[name] });
      return {
        model,
        windows: counters.map(({ kind, position }) => {
          const counted = buckets[next++]!;
          const used = countedSum(counted);
          const limit = limits[kind.name] ?? null;
          return {
            window: kind.name,
            used,
            limit,
            remaining: limit === null ? null : Math.max(0, limit - used),
            reset: Math.ceil((now + msUntilEmpty(counted, position, now)) / 1000),
            ...shadowOf(kind.name),
          };
        }),
        concurrentRequests: { used: leases[i]!, limit: limits[CONCURRENCY_LIMIT.name] ?? null, ...shadowOf(CONCURRENCY_LIMIT.name) },
      };
    });
  }

  /** Forgets every counter and lease of a user (all configured models). */
  async reset(user: string): Promise<void> {
    await Promise.all(this.config().modelNames.map((model) => this.store.reset({ user, model })));
  }

  private counters(config: ConfigSnapshot): PlacedCounter[] {
    const { timeZone } = config.settings.dailyReset;
    return COUNTER_KINDS.map((kind) => ({ kind, window: windowOf(kind.window, timeZone) }));
  }

  private leaseMs(config: ConfigSnapshot): number {
    return config.settings.reservation.concurrencyLeaseSeconds * 1000;
  }

  private reservationTtlMs(config: ConfigSnapshot): number {
    return this.leaseMs(config) + RESERVATION_GRACE_MS;
  }

  private denyByCounter(counters: readonly PlacedCounter[], charges: readonly CounterCharge[], name: CounterName, buckets: Buckets, now: number): Admission {
    const index = counters.findIndex((c) => c.kind.name === name);
    const { kind, window } = counters[index]!;
    const { limit, cost } = charges[index]!;
    const position = window.positionAt(now);
    const state: LimitState = {
      name,
      limit: limit!,
      remaining: Math.max(0, limit! - countedSum(buckets)),
      resetMs: msUntilEmpty(buckets, position, now),
    };
    return {
      admitted: false,
      limit: name,
      limitValue: limit!,
      requested: cost,
      retryAfterMs: msUntilFits(buckets, cost, limit!, position, now),
      windowMs: window.lengthMs,
      view: kind.counts === 'tokens' ? { tokens: state } : { requests: state },
    };
  }
}

function denyByConcurrency(limit: number, untilLeaseExpiryMs: number | undefined): Admission {
  const retryAfterMs = limit === 0 ? undefined : Math.min(CONCURRENCY_RETRY_MS, Math.max(0, untilLeaseExpiryMs ?? 0));
  return {
    admitted: false,
    limit: CONCURRENCY_LIMIT.name,
    limitValue: limit,
    requested: 1,
    retryAfterMs,
    windowMs: CONCURRENCY_RETRY_MS,
    view: { requests: { name: CONCURRENCY_LIMIT.name, limit, remaining: 0, resetMs: retryAfterMs ?? 0 } },
  };
}
