import { randomUUID } from 'node:crypto';
import type { ConfigSnapshot } from '../config/snapshot.js';
import { wordingOf, type LimitName } from '../limit-kinds.js';
import type { Admission } from '../quota/engine.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { denialMember, type AggregateId, type AggregateIncrement, type AggregateKind, type AggregateStore } from './counter-sets.js';
import { periodAt, REPORT_PERIODS, RETENTION_MS, type PeriodInstance, type ReportPeriod } from './periods.js';

/** A request settled with the tokens it was charged. */
export interface SettledUsage {
  readonly user: string;
  readonly model: string;
  readonly tokens: number;
  /** When it was admitted: the periods it counts in are those the quota charged (default: now). */
  readonly atMs?: number;
}

/** A request refused by a quota (a 429). */
export interface QuotaDenial {
  readonly user: string;
  /** The caller's groups (from its JWT) when it was refused. */
  readonly groups: readonly string[];
  readonly model: string;
  readonly limit: LimitName;
  readonly limitValue: number;
  /** What the request asked of that limit (tokens, or 1 request). */
  readonly requested: number;
  readonly retryAfterMs: number | undefined;
}

export function quotaDenialOf(who: { user: string; groups: readonly string[]; model: string }, admission: Extract<Admission, { admitted: false }>): QuotaDenial {
  return { ...who, limit: admission.limit, limitValue: admission.limitValue, requested: admission.requested, retryAfterMs: admission.retryAfterMs };
}

export interface RecentDenial extends QuotaDenial {
  /** ISO 8601. */
  readonly at: string;
  /** The 429's wording: "tokens per day". */
  readonly reason: string;
}

/** What admissions and settlements tell the reports (QuotaEngine calls it; it never throws or waits). */
export interface UsageObserver {
  settled(entries: readonly SettledUsage[]): void;
  denied(denial: QuotaDenial): void;
}

export interface PeriodBounds {
  readonly period: ReportPeriod;
  readonly label: string;
  readonly start: string;
  readonly end: string;
}

export interface TopUsersReport extends PeriodBounds {
  readonly model: string | null;
  readonly users: ReadonlyArray<{ readonly user: string; readonly tokens: number }>;
  /** Users with any tokens in the period (the list is the first `limit` of them). */
  readonly userCount: number;
}

export interface ModelTotals {
  readonly model: string;
  readonly tokens: number;
  readonly requests: number;
}

export interface TotalsReport extends TopUsersReport {
  readonly tokens: number;
  readonly requests: number;
  readonly models: readonly ModelTotals[];
}

export interface DailyReport {
  readonly timeZone: string;
  readonly model: string | null;
  /** Oldest first, today last. */
  readonly days: ReadonlyArray<{ readonly date: string; readonly tokens: number; readonly requests: number; readonly models: readonly ModelTotals[] }>;
}

/** The aggregates are written this often (and at close): a settlement costs no store round trip of its own. */
const FLUSH_EVERY_MS = 1000;
const RECENT_DENIALS_KEPT = 200;
/** How long a sent batch may be resent: less than the store remembers applied batches' ids (BATCH_ID_TTL_MS). */
const BATCH_RESEND_WINDOW_MS = 5.5 * 3600_000;

/**
 * Usage reports: who used how many tokens per hour, day and month, per model and in all, and quota
 * denials per day — compact aggregates added up as requests settle, never a scan of counter keys.
 * Writing is batched in memory and flushed every second; a failed flush is counted, logged and retried. Reports are accounting, not enforcement: the quota
 * counters stay the authority, and a reservation that expires unsettled is in them but not here.
 */
export class UsageReports implements UsageObserver {
  private pending = new Map<string, { id: AggregateId; expiresAtMs: number; increments: Map<string, number> }>();
  private readonly recent: RecentDenial[] = [];
  private flushing: Promise<void> = Promise.resolve();
  private readonly current: Partial<Record<ReportPeriod, { readonly timeZone: string; readonly instance: PeriodInstance }>> = {};
  /** A batch sent but not known to be written, and when it was first sent. */
  private inDoubt: { readonly batchId: string; readonly sentAtMs: number; increments: readonly AggregateIncrement[] } | undefined;
  private readonly timer: NodeJS.Timeout;
  private failing = false;

  constructor(
    private readonly deps: {
      readonly store: AggregateStore;
      readonly config: () => ConfigSnapshot;
      readonly clock: () => number;
      readonly metrics: Metrics;
      readonly logger: Logger;
    },
  ) {
    this.timer = setInterval(() => void this.flush(), FLUSH_EVERY_MS).unref();
  }

  settled(entries: readonly SettledUsage[]): void {
    const now = this.deps.clock();
    for (const { user, model, tokens, atMs } of entries) {
      for (const period of REPORT_PERIODS) {
        const instance = this.periodAt(period, atMs ?? now);
        if (tokens > 0) {
          this.add(instance, 'userTokens', undefined, user, tokens);
          this.add(instance, 'userTokens', model, user, tokens);
          this.add(instance, 'modelTokens', undefined, model, tokens);
        }
        this.add(instance, 'modelRequests', undefined, model, 1);
      }
    }
  }

  denied(denial: QuotaDenial): void {
    const now = this.deps.clock();
    this.add(this.periodAt('day', now), 'denials', undefined, denialMember(denial.user, denial.model), 1);
    this.recent.push({ ...denial, at: new Date(now).toISOString(), reason: wordingOf(denial.limit) });
    if (this.recent.length > RECENT_DENIALS_KEPT) this.recent.shift();
  }

  /** Quota denials this instance answered, newest first (optionally one user's). Kept in memory: this replica's only. */
  recentDenials(limit: number, user?: string): RecentDenial[] {
    const out: RecentDenial[] = [];
    for (let i = this.recent.length - 1; i >= 0 && out.length < limit; i--) if (user === undefined || this.recent[i]!.user === user) out.push(this.recent[i]!);
    return out;
  }

  /**
   * Writes what has been added up so far; resolves once it is in the store, or failed and was kept.
   * A batch that failed may still have been applied (its reply lost): it is retried as it was, under
   * the same id, which the store applies at most once; what arrives meanwhile waits for the next batch.
   */
  flush(): Promise<void> {
    const run = async () => {
      const now = this.deps.clock();
      // Kept through a long outage, aggregates whose retention has passed are dropped, not sent: memory stays bounded.
      for (const [key, entry] of this.pending) if (entry.expiresAtMs <= now) this.pending.delete(key);
      if (this.inDoubt !== undefined) {
        this.inDoubt.increments = this.inDoubt.increments.filter((i) => i.expiresAtMs > now);
        // Past the store's memory of its id, a resend could count twice: better to lose it, and say so.
        if (now - this.inDoubt.sentAtMs > BATCH_RESEND_WINDOW_MS) {
          this.deps.logger.warn({ batch: this.inDoubt.batchId }, 'a usage-report batch could not be confirmed before its id expired; dropped (it may or may not be counted)');
          this.inDoubt = undefined;
        }
      }
      if (this.inDoubt === undefined) {
        if (this.pending.size === 0) return;
        const increments = [...this.pending.values()].map(({ id, expiresAtMs, increments }) => ({ id, expiresAtMs, increments: [...increments] }));
        this.pending = new Map();
        this.inDoubt = { batchId: randomUUID(), sentAtMs: now, increments };
      }
      try {
        await this.deps.store.increment(this.inDoubt.batchId, this.inDoubt.increments);
        this.inDoubt = undefined;
        if (this.failing) this.deps.logger.info('usage reports written again');
        this.failing = false;
      } catch (err) {
        this.deps.metrics.storeErrors.inc({ operation: 'report' });
        if (!this.failing) this.deps.logger.warn({ err: (err as Error).message }, 'could not write usage reports; retrying every second');
        this.failing = true;
        return;
      }
      // What arrived while the batch was in doubt goes now, not a second later.
      if (this.pending.size > 0) await run();
    };
    this.flushing = this.flushing.then(run, run);
    return this.flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  /** The users with the most tokens in a period, in all models or one. */
  async topUsers(period: ReportPeriod, options: { model?: string; limit: number; ago: number }): Promise<TopUsersReport> {
    await this.flush();
    const instance = this.periodAt(period, this.deps.clock(), options.ago);
    const top = await this.deps.store.top(idOf(instance, 'userTokens', options.model), options.limit);
    return {
      ...boundsOf(instance),
      model: options.model ?? null,
      users: top.members.map(([user, tokens]) => ({ user, tokens })),
      userCount: top.size,
    };
  }

  /** Tokens and requests per model and in all, and the top users, for a period. */
  async totals(period: ReportPeriod, options: { limit: number; ago: number }): Promise<TotalsReport> {
    const top = await this.topUsers(period, options);
    const instance = this.periodAt(period, this.deps.clock(), options.ago);
    const models = await this.modelTotals(instance);
    return {
      ...top,
      tokens: models.reduce((sum, m) => sum + m.tokens, 0),
      requests: models.reduce((sum, m) => sum + m.requests, 0),
      models,
    };
  }

  /** Tokens and requests per day for the last `days` days, today included (a model's only when named). */
  async daily(options: { days: number; model?: string }): Promise<DailyReport> {
    await this.flush();
    const now = this.deps.clock();
    const instances = Array.from({ length: options.days }, (_, i) => this.periodAt('day', now, options.days - 1 - i));
    const days = await Promise.all(
      instances.map(async (instance) => {
        const all = await this.modelTotals(instance);
        const models = options.model === undefined ? all : all.filter((m) => m.model === options.model);
        return { date: instance.label, tokens: models.reduce((s, m) => s + m.tokens, 0), requests: models.reduce((s, m) => s + m.requests, 0), models };
      }),
    );
    return { timeZone: this.timeZone(), model: options.model ?? null, days };
  }

  /** One user's tokens in the current period of each model, and 429s today per model. */
  async userTotals(user: string, models: readonly string[]): Promise<Array<{ model: string; tokensToday: number; tokensThisMonth: number; deniedToday: number }>> {
    await this.flush();
    const now = this.deps.clock();
    const [day, month] = [this.periodAt('day', now), this.periodAt('month', now)];
    const [today, thisMonth, denied] = await Promise.all([
      Promise.all(models.map((m) => this.deps.store.scores(idOf(day, 'userTokens', m), [user]))),
      Promise.all(models.map((m) => this.deps.store.scores(idOf(month, 'userTokens', m), [user]))),
      this.deps.store.scores(idOf(day, 'denials'), models.map((m) => denialMember(user, m))),
    ]);
    return models.map((model, i) => ({ model, tokensToday: today[i]![0]!, tokensThisMonth: thisMonth[i]![0]!, deniedToday: denied[i]! }));
  }

  private async modelTotals(instance: PeriodInstance): Promise<ModelTotals[]> {
    const [tokens, requests] = await Promise.all([
      this.deps.store.top(idOf(instance, 'modelTokens'), Infinity),
      this.deps.store.top(idOf(instance, 'modelRequests'), Infinity),
    ]);
    const byModel = new Map<string, { tokens: number; requests: number }>();
    for (const [model, n] of requests.members) byModel.set(model, { tokens: 0, requests: n });
    for (const [model, n] of tokens.members) byModel.set(model, { tokens: n, requests: byModel.get(model)?.requests ?? 0 });
    return [...byModel].map(([model, t]) => ({ model, ...t })).sort((a, b) => b.tokens - a.tokens || b.requests - a.requests);
  }

  private add(instance: PeriodInstance, kind: AggregateKind, model: string | undefined, member: string, by: number): void {
    this.addTo(idOf(instance, kind, model), instance.endMs + RETENTION_MS[instance.period], member, by);
  }

  private addTo(id: AggregateId, expiresAtMs: number, member: string, by: number): void {
    const key = JSON.stringify([id.period, id.bucket, id.kind, id.model ?? null]);
    let entry = this.pending.get(key);
    if (entry === undefined) this.pending.set(key, (entry = { id, expiresAtMs, increments: new Map() }));
    entry.increments.set(member, (entry.increments.get(member) ?? 0) + by);
  }

  private periodAt(period: ReportPeriod, atMs: number, ago = 0): PeriodInstance {
    const timeZone = this.timeZone();
    if (ago !== 0) return periodAt(period, atMs, timeZone, ago);
    // Every settlement asks for the current hour, day and month: reading the zone's clock each time would cost more than the rest.
    const cached = this.current[period];
    if (cached !== undefined && cached.timeZone === timeZone && atMs >= cached.instance.startMs && atMs < cached.instance.endMs) return cached.instance;
    const instance = periodAt(period, atMs, timeZone);
    this.current[period] = { timeZone, instance };
    return instance;
  }

  private timeZone(): string {
    return this.deps.config().settings.dailyReset.timeZone;
  }
}

function idOf(instance: PeriodInstance, kind: AggregateKind, model?: string): AggregateId {
  return { period: instance.period, bucket: instance.bucket, kind, ...(model === undefined ? {} : { model }) };
}

function boundsOf(instance: PeriodInstance): PeriodBounds {
  return { period: instance.period, label: instance.label, start: new Date(instance.startMs).toISOString(), end: new Date(instance.endMs).toISOString() };
}
