import type { ConfigSnapshot, EffectiveLimits } from '../config/snapshot.js';
import { userModelKeys, reservationIdFor, type UserModelKeys } from './keys.js';
import type { Charge, CounterCharge, QuotaStore, SettleOutcome } from './store.js';
import {
  calendarDay,
  countedSum,
  HOUR,
  MINUTE,
  msUntilEmpty,
  msUntilFits,
  type Buckets,
  type Window,
} from './windows.js';

export type Clock = () => number;

export type WindowLimitName = 'tokensPerMinute' | 'tokensPerHour' | 'tokensPerDay' | 'requestsPerMinute';
export type DenyingLimit = WindowLimitName | 'maxConcurrentRequests';

/** A limit's state as OpenAI's x-ratelimit-* headers describe it. */
export interface LimitState {
  readonly limit: number;
  readonly remaining: number;
  /** Time until the limit is back to its full value. */
  readonly resetMs: number;
}

export interface RateLimitView {
  readonly tokens?: LimitState;
  readonly requests?: LimitState;
}

export interface AdmissionRequest {
  readonly user: string;
  /** Groups the caller belongs to (from a JWT), for group limits. */
  readonly groups: readonly string[];
  readonly model: string;
  readonly promptTokens: number;
  /** The request's max_tokens, if it gave one. */
  readonly maxTokens: number | undefined;
  /** Completions requested (OpenAI's n); each may produce up to maxTokens. */
  readonly choices: number;
  /** Envoy's x-request-id. */
  readonly requestId: string | undefined;
}

export type Admission =
  | {
      readonly admitted: true;
      readonly reservationId: string;
      readonly reservedTokens: number;
      readonly view: RateLimitView;
    }
  | {
      readonly admitted: false;
      readonly limit: DenyingLimit;
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
  readonly window: WindowLimitName;
  readonly used: number;
  readonly limit: number | null;
  readonly remaining: number | null;
  /** Unix seconds at which the window is back to its full limit. */
  readonly reset: number;
}

export interface ModelUsage {
  readonly model: string;
  readonly windows: readonly WindowUsage[];
  readonly concurrentRequests: { readonly used: number; readonly limit: number | null };
}

const CONCURRENCY_RETRY_MS = 1000;
/** How long a reservation outlives its concurrency lease, waiting for a late access-log entry. */
const RESERVATION_GRACE_MS = 60_000;
/** The first three windows count tokens (minute, hour, day); the fourth counts requests. */
const TOKEN_WINDOWS = 3;

export interface SettleRequest {
  readonly user: string;
  readonly model: string;
  readonly reservationId: string;
  readonly charge: Charge;
}

/**
 * Decides admissions: a request is charged its prompt tokens plus its expected completion in every
 * token window, one request in the request window, and takes a concurrency lease — all or nothing.
 */
export class QuotaEngine {
  private day: { timeZone: string; window: Window } | undefined;

  constructor(
    private readonly store: QuotaStore,
    private readonly config: () => ConfigSnapshot,
    private readonly clock: Clock = Date.now,
  ) {}

  async admit(request: AdmissionRequest): Promise<Admission> {
    const config = this.config();
    const now = this.clock();
    const limits = config.limitsFor(request.user, request.model, request.groups);
    const { defaultCompletionTokens, concurrencyLeaseSeconds } = config.settings.reservation;
    const reservedTokens = request.promptTokens + (request.maxTokens ?? defaultCompletionTokens) * request.choices;
    const keys = userModelKeys(request.user, request.model);
    const windows = this.windows(config, keys);
    const counters: CounterCharge[] = windows.map(({ name, key, window }) => {
      const position = window.positionAt(now);
      return {
        key,
        limit: limits[name] ?? null,
        cost: name === 'requestsPerMinute' ? 1 : reservedTokens,
        bucket: position.bucket,
        oldestCounted: position.oldestCounted,
        ttlMs: position.ttlMs,
      };
    });

    // A request that can never fit is refused without asking the store.
    const hopeless = counters.findIndex((c) => c.limit !== null && c.cost > c.limit);
    if (hopeless >= 0) return this.denyByCounter(windows, counters, hopeless, [], now);
    if (limits.maxConcurrentRequests === 0) return denyByConcurrency(0, undefined);

    const reservationId = reservationIdFor(request.requestId);
    const leaseMs = concurrencyLeaseSeconds * 1000;
    const outcome = await this.store.reserve({
      counters,
      lease: {
        key: keys.leases,
        limit: limits.maxConcurrentRequests ?? null,
        nowMs: now,
        expiresAtMs: now + leaseMs,
        ttlMs: leaseMs + RESERVATION_GRACE_MS,
      },
      reservation: {
        id: reservationId,
        fallbackId: `${reservationId}.${now.toString(36)}${Math.random().toString(36).slice(2, 8)}`,
        keyFor: keys.reservation,
        ttlMs: leaseMs + RESERVATION_GRACE_MS,
        record: {
          user: request.user,
          model: request.model,
          promptTokens: request.promptTokens,
          reservedTokens,
          createdAtMs: now,
          expiresAtMs: now + leaseMs + RESERVATION_GRACE_MS,
          tokenBuckets: counters.slice(0, TOKEN_WINDOWS).map((c) => c.bucket),
        },
      },
    });

    if (!outcome.admitted) {
      const { deniedBy } = outcome;
      if ('lease' in deniedBy) return denyByConcurrency(limits.maxConcurrentRequests ?? 0, deniedBy.earliestExpiryMs - now);
      return this.denyByCounter(windows, counters, deniedBy.counter, deniedBy.buckets, now);
    }

    const states = windows.flatMap(({ name, window }, i) => {
      const limit = counters[i]!.limit;
      if (limit === null) return [];
      const position = window.positionAt(now);
      const remaining = Math.max(0, limit - outcome.used[i]!);
      return [{ name, state: { limit, remaining, resetMs: position.expiresAt(position.bucket) - now } }];
    });
    const tokenStates = states.filter((s) => s.name !== 'requestsPerMinute').map((s) => s.state);
    const tightest = tokenStates.sort((a, b) => a.remaining - b.remaining)[0];
    const requests = states.find((s) => s.name === 'requestsPerMinute')?.state;
    return {
      admitted: true,
      reservationId: outcome.reservationId,
      reservedTokens,
      view: { ...(tightest ? { tokens: tightest } : {}), ...(requests ? { requests } : {}) },
    };
  }

  /** Settles reservations with what the requests really used (or a rule's stand-in), at most once each. */
  async settle(requests: readonly SettleRequest[]): Promise<SettleOutcome[]> {
    const now = this.clock();
    const ttlMs = this.config().settings.reservation.concurrencyLeaseSeconds * 1000 + RESERVATION_GRACE_MS;
    return this.store.settle(
      requests.map((request) => {
        const keys = userModelKeys(request.user, request.model);
        return {
          reservationKey: keys.reservation(request.reservationId),
          tombstoneKey: keys.settled(request.reservationId),
          tombstoneTtlMs: ttlMs,
          leaseKey: keys.leases,
          reservationId: request.reservationId,
          tokenCounterKeys: [keys.tokensPerMinute, keys.tokensPerHour, keys.tokensPerDay],
          charge: request.charge,
          nowMs: now,
        };
      }),
    );
  }

  /** Usage of one user for each configured model (or just `onlyModel`). */
  async usage(user: string, onlyModel?: string): Promise<ModelUsage[]> {
    const config = this.config();
    const now = this.clock();
    const models = onlyModel === undefined ? config.modelNames : [onlyModel];
    const reads = models.map((model) => {
      const keys = userModelKeys(user, model);
      const windows = this.windows(config, keys).map((w) => ({ ...w, position: w.window.positionAt(now) }));
      return { model, keys, windows, limits: config.limitsFor(user, model) };
    });
    const buckets = await this.store.readCounters(
      reads.flatMap((r) => r.windows.map((w) => ({ key: w.key, oldestCounted: w.position.oldestCounted }))),
    );
    const leases = await Promise.all(reads.map((r) => this.store.countLeases(r.keys.leases, now)));
    let next = 0;
    return reads.map((r, i) => ({
      model: r.model,
      windows: r.windows.map((w) => {
        const counted = buckets[next++]!;
        const used = countedSum(counted);
        const limit = r.limits[w.name] ?? null;
        return {
          window: w.name,
          used,
          limit,
          remaining: limit === null ? null : Math.max(0, limit - used),
          reset: Math.ceil((now + msUntilEmpty(counted, w.position, now)) / 1000),
        };
      }),
      concurrentRequests: { used: leases[i]!, limit: r.limits.maxConcurrentRequests ?? null },
    }));
  }

  /** Forgets every counter and lease of a user (all configured models). */
  async reset(user: string): Promise<void> {
    const config = this.config();
    const keys = config.modelNames.flatMap((model) => {
      const k = userModelKeys(user, model);
      return [k.tokensPerMinute, k.tokensPerHour, k.tokensPerDay, k.requestsPerMinute, k.leases];
    });
    await this.store.deleteKeys(keys);
  }

  private windows(config: ConfigSnapshot, keys: UserModelKeys) {
    const { timeZone } = config.settings.dailyReset;
    if (this.day?.timeZone !== timeZone) this.day = { timeZone, window: calendarDay(timeZone) };
    const day = this.day.window;
    return [
      { name: 'tokensPerMinute', key: keys.tokensPerMinute, window: MINUTE },
      { name: 'tokensPerHour', key: keys.tokensPerHour, window: HOUR },
      { name: 'tokensPerDay', key: keys.tokensPerDay, window: day },
      { name: 'requestsPerMinute', key: keys.requestsPerMinute, window: MINUTE },
    ] as const satisfies ReadonlyArray<{ name: WindowLimitName; key: string; window: Window }>;
  }

  private denyByCounter(
    windows: ReturnType<QuotaEngine['windows']>,
    counters: readonly CounterCharge[],
    index: number,
    buckets: Buckets,
    now: number,
  ): Admission {
    const { name, window } = windows[index]!;
    const { limit, cost } = counters[index]!;
    const position = window.positionAt(now);
    const state: LimitState = {
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
      view: name === 'requestsPerMinute' ? { requests: state } : { tokens: state },
    };
  }
}

function denyByConcurrency(limit: number, untilLeaseExpiryMs: number | undefined): Admission {
  const retryAfterMs = limit === 0 ? undefined : Math.min(CONCURRENCY_RETRY_MS, Math.max(0, untilLeaseExpiryMs ?? 0));
  return {
    admitted: false,
    limit: 'maxConcurrentRequests',
    limitValue: limit,
    requested: 1,
    retryAfterMs,
    windowMs: CONCURRENCY_RETRY_MS,
    view: { requests: { limit, remaining: 0, resetMs: retryAfterMs ?? 0 } },
  };
}
