import { describeLevel, describeSource, type LimitOrigin } from '../../config/provenance.js';
import { CONCURRENCY_LIMIT, wordingOf, type LimitName } from '../../limit-kinds.js';
import type { RecentDenial } from '../../reports/usage-reports.js';
import type { UserReport } from '../../reports/user-report.js';

/** One limit of one model as the page draws it: a bar, the numbers, and where the limit comes from. */
export interface LimitRowView {
  readonly name: LimitName;
  readonly wording: string;
  readonly used: number;
  /** null: unlimited. */
  readonly max: number | null;
  readonly remaining: number | null;
  /** Unix seconds when the window is full again; null for concurrency (slots free as requests end). */
  readonly resetAt: number | null;
  readonly shadowMax: number | null;
  readonly exhausted: boolean;
  readonly enforcedBy: string;
  /** null when no shadow value applies. */
  readonly shadowBy: string | null;
}

export interface UserModelView {
  readonly model: string;
  readonly limits: readonly LimitRowView[];
  readonly exhausted: readonly string[];
  readonly tokensToday: number;
  readonly tokensThisMonth: number;
  readonly deniedToday: number;
}

export interface UserView {
  readonly user: string;
  readonly groups: readonly string[];
  readonly groupsFrom: UserReport['groupsFrom'];
  readonly timeZone: string;
  readonly configSource: string;
  readonly deniedToday: number;
  readonly models: readonly UserModelView[];
  readonly recentDenials: readonly RecentDenial[];
}

/** The user report with provenance put in words (as `tokenwarden explain` writes it), so the page only lays it out. */
export function userView(report: UserReport): UserView {
  return {
    user: report.user,
    groups: report.groups,
    groupsFrom: report.groupsFrom,
    timeZone: report.timeZone,
    configSource: describeSource(report.source),
    deniedToday: report.deniedToday,
    recentDenials: report.recentDenials,
    models: report.models.map((m) => {
      const exhausted = new Set<LimitName>(m.exhausted);
      const windows = m.windows.map(
        (w): LimitRowView => ({
          name: w.window,
          wording: wordingOf(w.window),
          used: w.used,
          max: w.limit,
          remaining: w.remaining,
          resetAt: w.reset,
          shadowMax: w.shadowLimit ?? null,
          exhausted: exhausted.has(w.window),
          enforcedBy: describeOrigin(w.enforcedBy),
          shadowBy: w.shadowBy.status === 'unset' ? null : describeOrigin(w.shadowBy),
        }),
      );
      const c = m.concurrentRequests;
      const concurrency: LimitRowView = {
        name: CONCURRENCY_LIMIT.name,
        wording: CONCURRENCY_LIMIT.wording,
        used: c.used,
        max: c.limit,
        remaining: c.limit === null ? null : Math.max(0, c.limit - c.used),
        resetAt: null,
        shadowMax: c.shadowBy.status === 'limited' ? c.shadowBy.value : null,
        exhausted: exhausted.has(CONCURRENCY_LIMIT.name),
        enforcedBy: describeOrigin(c.enforcedBy),
        shadowBy: c.shadowBy.status === 'unset' ? null : describeOrigin(c.shadowBy),
      };
      return {
        model: m.model,
        limits: [...windows, concurrency],
        exhausted: m.exhausted.map(wordingOf),
        tokensToday: m.tokensToday,
        tokensThisMonth: m.tokensThisMonth,
        deniedToday: m.deniedToday,
      };
    }),
  };
}

function describeOrigin(origin: LimitOrigin): string {
  if (origin.status === 'unset') return 'not set (unlimited)';
  const where = `${describeLevel(origin.level)} — ${describeSource(origin.source)}`;
  return origin.status === 'unlimited' ? `unlimited: ${where}` : where;
}
