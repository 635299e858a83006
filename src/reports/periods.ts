import { wallMidnightToUtc } from '../quota/windows.js';
import { wallClock } from '../zoned-time.js';

/** The periods reports add tokens up over. Days and months are calendar ones in dailyReset.timeZone. */
export const REPORT_PERIODS = ['hour', 'day', 'month'] as const;
export type ReportPeriod = (typeof REPORT_PERIODS)[number];

const HOUR_MS = 3600_000;
const DAY_MS = 24 * HOUR_MS;

/**
 * How long a period's aggregates are kept after it ends, and so how far back a report can look:
 * two days of hours, the 31 days of the daily trend (and a few more), thirteen months.
 */
export const RETENTION_MS: Record<ReportPeriod, number> = {
  hour: 2 * DAY_MS,
  day: 35 * DAY_MS,
  month: 400 * DAY_MS,
};

/** The most periods back a report may ask for (`ago`): what RETENTION_MS keeps. */
export const MAX_AGO: Record<ReportPeriod, number> = { hour: 47, day: 34, month: 12 };

/** One period: its number (hours since 1970 UTC, local days since 1970-01-01, local months since January 1970) and its bounds. */
export interface PeriodInstance {
  readonly period: ReportPeriod;
  readonly bucket: number;
  readonly startMs: number;
  readonly endMs: number;
  /** "2026-11-23T14" (UTC hour), "2026-11-23", "2026-11". */
  readonly label: string;
}

/** The period containing `atMs`, or the one `ago` periods before it. */
export function periodAt(period: ReportPeriod, atMs: number, timeZone: string, ago = 0): PeriodInstance {
  if (period === 'hour') {
    const bucket = Math.floor(atMs / HOUR_MS) - ago;
    return { period, bucket, startMs: bucket * HOUR_MS, endMs: (bucket + 1) * HOUR_MS, label: new Date(bucket * HOUR_MS).toISOString().slice(0, 13) };
  }
  const { year, month, day } = wallClock(atMs, timeZone);
  if (period === 'day') {
    const bucket = Date.UTC(year, month - 1, day) / DAY_MS - ago;
    const date = new Date(bucket * DAY_MS);
    const [y, m, d] = [date.getUTCFullYear(), date.getUTCMonth() + 1, date.getUTCDate()];
    return { period, bucket, startMs: wallMidnightToUtc(y, m, d, timeZone), endMs: wallMidnightToUtc(y, m, d + 1, timeZone), label: date.toISOString().slice(0, 10) };
  }
  const bucket = (year - 1970) * 12 + month - 1 - ago;
  const [y, m] = [1970 + Math.floor(bucket / 12), (bucket % 12) + 1];
  return { period, bucket, startMs: wallMidnightToUtc(y, m, 1, timeZone), endMs: wallMidnightToUtc(y, m + 1, 1, timeZone), label: `${y}-${String(m).padStart(2, '0')}` };
}
