import type { LimitOrigin } from '../config/provenance.js';
import type { ConfigSnapshot } from '../config/snapshot.js';
import { CONCURRENCY_LIMIT, type LimitName } from '../limit-kinds.js';
import type { QuotaEngine, WindowUsage } from '../quota/engine.js';
import type { RecentDenial, UsageReports } from './usage-reports.js';

/** How many of the user's recent denials a report lists. */
const RECENT_DENIALS = 20;

export interface UserModelReport {
  readonly model: string;
  /** Each window: used, limit, remaining, reset, and where its enforced and shadow values come from. */
  readonly windows: ReadonlyArray<WindowUsage & { readonly enforcedBy: LimitOrigin; readonly shadowBy: LimitOrigin }>;
  readonly concurrentRequests: { readonly used: number; readonly limit: number | null; readonly enforcedBy: LimitOrigin; readonly shadowBy: LimitOrigin };
  /** The limits that refuse a request now: a window with nothing left, or every concurrency slot taken. */
  readonly exhausted: readonly LimitName[];
  readonly tokensToday: number;
  readonly tokensThisMonth: number;
  /** 429s answered today (every replica's, in the calendar day of dailyReset.timeZone). */
  readonly deniedToday: number;
}

export interface UserReport {
  readonly user: string;
  readonly groups: readonly string[];
  /** Where the groups came from: the query, the groups of the user's latest 429 on this replica, or none. */
  readonly groupsFrom: 'query' | 'lastDenial' | 'none';
  readonly timeZone: string;
  readonly source: ConfigSnapshot['source'];
  readonly deniedToday: number;
  readonly models: readonly UserModelReport[];
  /** The latest 429s this replica answered the user, newest first. */
  readonly recentDenials: readonly RecentDenial[];
}

/**
 * Everything about one user in one answer — "why am I getting 429s?": per model, each window's use
 * and what is left, the limits exhausted now, where every limit comes from, and the 429s today.
 */
export async function userReport(
  deps: { readonly engine: QuotaEngine; readonly reports: UsageReports; readonly config: ConfigSnapshot },
  user: string,
  options: { readonly model?: string; readonly groups?: readonly string[] },
): Promise<UserReport> {
  const { engine, reports, config } = deps;
  // Group limits depend on the caller's JWT, which a report cannot see: unless told, it takes the
  // groups the user's latest 429 on this replica carried — the ones that denied.
  const lastDenial = options.groups === undefined ? reports.recentDenials(1, user)[0] : undefined;
  const groups = options.groups ?? lastDenial?.groups ?? [];
  const groupsFrom: UserReport['groupsFrom'] = options.groups !== undefined ? 'query' : lastDenial !== undefined ? 'lastDenial' : 'none';
  const models = options.model === undefined ? config.modelNames : [options.model];
  const [usage, totals] = await Promise.all([engine.usage(user, options.model, groups), reports.userTotals(user, models)]);
  const modelReports = usage.map((m, i): UserModelReport => {
    const explained = config.explainLimits(user, m.model, groups);
    const windows = m.windows.map((w) => ({ ...w, enforcedBy: explained[w.window].enforced, shadowBy: explained[w.window].shadow }));
    const concurrency = m.concurrentRequests;
    const exhausted: LimitName[] = windows.filter((w) => w.remaining === 0).map((w) => w.window);
    if (concurrency.limit !== null && concurrency.used >= concurrency.limit) exhausted.push(CONCURRENCY_LIMIT.name);
    const { tokensToday, tokensThisMonth, deniedToday } = totals[i]!;
    return {
      model: m.model,
      windows,
      concurrentRequests: {
        used: concurrency.used,
        limit: concurrency.limit,
        enforcedBy: explained[CONCURRENCY_LIMIT.name].enforced,
        shadowBy: explained[CONCURRENCY_LIMIT.name].shadow,
      },
      exhausted,
      tokensToday,
      tokensThisMonth,
      deniedToday,
    };
  });
  return {
    user,
    groups,
    groupsFrom,
    timeZone: config.settings.dailyReset.timeZone,
    source: config.source,
    deniedToday: modelReports.reduce((sum, m) => sum + m.deniedToday, 0),
    models: modelReports,
    recentDenials: reports.recentDenials(RECENT_DENIALS, user),
  };
}
