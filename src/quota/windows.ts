import { wallClock } from '../zoned-time.js';
import type { WindowSpec } from '../limit-kinds.js';

/**
 * Counting windows.
 *
 * Minute and hour windows are bucketed sliding windows: a charge lands in the bucket of its time
 * (5 s buckets for a minute, 1 min buckets for an hour), and a check sums the current bucket and the
 * `span` whole buckets before it — everything charged at least one window-length ago, plus at most one
 * bucket more. Proof that no window-length span ever holds more than the limit: take any span and its
 * last admission at time t; that check counted every charge in [t - window, t] and found room, and the
 * span lies inside that interval. The price is that a charge keeps counting for up to one bucket
 * longer than the window (65 s instead of 60 s); in exchange a check reads at most span + 1 numbers.
 *
 * The day window is a calendar day in a configured time zone: one bucket that resets at local midnight.
 */
export interface WindowPosition {
  /** The bucket a charge made now goes into. */
  readonly bucket: number;
  /** Buckets numbered below this no longer count. */
  readonly oldestCounted: number;
  /** How long the counter must outlive its last charge. */
  readonly ttlMs: number;
  /** The time at which a charge in `bucket` stops counting. */
  expiresAt(bucket: number): number;
}

export interface Window {
  /** The nominal length of the window. */
  readonly lengthMs: number;
  positionAt(nowMs: number): WindowPosition;
}

export function slidingWindow(lengthMs: number, bucketMs: number): Window {
  if (lengthMs % bucketMs !== 0) throw new Error('window length must be a whole number of buckets');
  const span = lengthMs / bucketMs;
  const expiresAt = (bucket: number) => (bucket + span + 1) * bucketMs;
  return {
    lengthMs,
    positionAt(nowMs) {
      const bucket = Math.floor(nowMs / bucketMs);
      return { bucket, oldestCounted: bucket - span, ttlMs: lengthMs + 2 * bucketMs, expiresAt };
    },
  };
}

/** Every zone's offset from UTC is a whole number of quarter hours, so local midnight starts a bucket. */
const QUARTER_HOUR_MS = 15 * 60_000;
/** A day counter outlives any day in any zone (26 h) plus a minute, so a zone change never expires it early. */
const DAY_COUNTER_TTL_MS = 26 * 3600_000 + 60_000;

/**
 * A calendar day in `timeZone`, counted in quarter-hour buckets of absolute time, named by their
 * first minute since the epoch: a check sums the buckets from local midnight on. The buckets do not
 * depend on the zone, so when the configured zone changes mid-day, exactly the charges made since the
 * new zone's midnight count — none are lost and none from before that midnight linger. (Earlier
 * releases kept one bucket per day named by the minute of local midnight: today's reads as today's
 * first quarter hour, so counters carry over an upgrade, in either direction.)
 */
export function calendarDay(timeZone: string): Window {
  let current: { startMs: number; endMs: number } | undefined;
  return {
    lengthMs: 24 * 3600 * 1000,
    positionAt(nowMs) {
      if (current === undefined || nowMs < current.startMs || nowMs >= current.endMs) {
        const { year, month, day } = wallClock(nowMs, timeZone);
        current = { startMs: wallMidnightToUtc(year, month, day, timeZone), endMs: wallMidnightToUtc(year, month, day + 1, timeZone) };
      }
      const { startMs, endMs } = current;
      return {
        bucket: quarterHourMinute(nowMs),
        oldestCounted: quarterHourMinute(startMs),
        ttlMs: DAY_COUNTER_TTL_MS,
        expiresAt: () => endMs,
      };
    },
  };
}

/** A month counter outlives the longest month plus any zone change (26 h) and a minute. */
const MONTH_COUNTER_TTL_MS = 31 * 24 * 3600_000 + DAY_COUNTER_TTL_MS;

/**
 * A calendar month in `timeZone`: one bucket per month, named by the month's number since January
 * 1970 (year * 12 + month), which is the same in every zone for all but a few hours around the turn
 * of a month — so a zone change mid-month keeps the month's charges (a change within those hours
 * counts the new zone's month from that change).
 */
export function calendarMonth(timeZone: string): Window {
  let current: { bucket: number; startMs: number; endMs: number } | undefined;
  return {
    lengthMs: 30 * 24 * 3600 * 1000,
    positionAt(nowMs) {
      if (current === undefined || nowMs < current.startMs || nowMs >= current.endMs) {
        const { year, month } = wallClock(nowMs, timeZone);
        current = {
          bucket: (year - 1970) * 12 + month - 1,
          startMs: wallMidnightToUtc(year, month, 1, timeZone),
          endMs: wallMidnightToUtc(year, month + 1, 1, timeZone),
        };
      }
      const { bucket, endMs } = current;
      return { bucket, oldestCounted: bucket, ttlMs: MONTH_COUNTER_TTL_MS, expiresAt: () => endMs };
    },
  };
}

function quarterHourMinute(ms: number): number {
  return Math.floor(ms / QUARTER_HOUR_MS) * 15;
}

/**
 * The first instant of the given wall-clock date in the zone (day may overflow the month, and month
 * the year): local
 * midnight, or — in zones whose DST change skips midnight (America/Santiago, Atlantic/Azores) — the
 * first instant after the gap.
 */
export function wallMidnightToUtc(year: number, month: number, day: number, timeZone: string): number {
  const wall = Date.UTC(year, month - 1, day);
  const guess = wall - wallClock(wall, timeZone).offsetMs;
  // The offset at the guess may differ from the offset at midnight itself (a DST change that day).
  const candidate = wall - wallClock(guess, timeZone).offsetMs;
  const { year: y, month: m, day: d } = wallClock(candidate, timeZone);
  if (Date.UTC(y, m - 1, d) === wall) return candidate;
  // Midnight does not exist that day: the day starts where the clock jumps into it, within the next hours.
  let low = candidate;
  let high = candidate + 3 * 3600_000;
  while (high - low > 60_000) {
    const mid = low + Math.floor((high - low) / 2 / 60_000) * 60_000;
    const at = wallClock(mid, timeZone);
    if (Date.UTC(at.year, at.month - 1, at.day) >= wall) high = mid;
    else low = mid;
  }
  return high;
}


/** Charged buckets as [bucket, amount] pairs, oldest first. */
export type Buckets = ReadonlyArray<readonly [number, number]>;

export function countedSum(buckets: Buckets): number {
  return buckets.reduce((sum, [, amount]) => sum + amount, 0);
}

/**
 * How long until `cost` more fits under `limit`, given the counted buckets; undefined if it never
 * will because the cost alone exceeds the limit.
 */
export function msUntilFits(
  buckets: Buckets,
  cost: number,
  limit: number,
  position: WindowPosition,
  nowMs: number,
): number | undefined {
  if (cost > limit) return undefined;
  let counted = countedSum(buckets);
  if (counted + cost <= limit) return 0;
  for (const [bucket, amount] of buckets) {
    counted -= amount;
    if (counted + cost <= limit) return Math.max(0, position.expiresAt(bucket) - nowMs);
  }
  return 0;
}

/** How long until every counted charge has expired and the window is back to its full limit. */
export function msUntilEmpty(buckets: Buckets, position: WindowPosition, nowMs: number): number {
  const newest = buckets.at(-1);
  return newest === undefined ? 0 : Math.max(0, position.expiresAt(newest[0]) - nowMs);
}

const windows = new Map<string, Window>();

/** The window a limit kind counts in (sliding windows are shared; calendar ones follow the zone). */
export function windowOf(spec: WindowSpec, timeZone: string): Window {
  const key = spec.kind === 'sliding' ? `${spec.lengthMs}/${spec.bucketMs}` : `${spec.period}@${timeZone}`;
  let window = windows.get(key);
  if (window === undefined) {
    window =
      spec.kind === 'sliding' ? slidingWindow(spec.lengthMs, spec.bucketMs) : spec.period === 'day' ? calendarDay(timeZone) : calendarMonth(timeZone);
    windows.set(key, window);
  }
  return window;
}
