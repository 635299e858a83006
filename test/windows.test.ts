import { describe, expect, it } from 'vitest';
import { formatResetDuration, retryAfterSeconds } from '../src/openai/responses.js';
import { calendarDay, msUntilEmpty, msUntilFits, slidingWindow } from '../src/quota/windows.js';

const MINUTE = slidingWindow(60_000, 5_000);

describe('calendar day', () => {
  const at = (iso: string) => Date.parse(iso);

  it('starts and ends at local midnight in the zone', () => {
    const seoul = calendarDay('Asia/Seoul').positionAt(at('2026-11-23T14:59:59Z'));
    expect(seoul.expiresAt(seoul.bucket)).toBe(at('2026-11-23T15:00:00Z'));
    const next = calendarDay('Asia/Seoul').positionAt(at('2026-11-23T15:00:00Z'));
    expect(next.bucket).toBeGreaterThan(seoul.bucket);
    expect(next.expiresAt(next.bucket)).toBe(at('2026-11-24T15:00:00Z'));
    const utc = calendarDay('UTC').positionAt(at('2026-11-23T00:00:00Z'));
    expect(utc.bucket * 60_000).toBe(at('2026-11-23T00:00:00Z'));
  });

  it('names the local date, so a zone change that keeps the date keeps the day\'s charges', () => {
    // 03:00 UTC on 23 Nov is 12:00 in Seoul: the same date in both zones.
    const now = at('2026-11-23T03:00:00Z');
    const utc = calendarDay('UTC').positionAt(now);
    const seoul = calendarDay('Asia/Seoul').positionAt(now);
    expect(seoul.bucket).toBe(utc.bucket);
    expect(seoul.oldestCounted).toBe(utc.oldestCounted);
    // 20:00 UTC is already the 24th in Seoul: a new day there, charged afresh.
    const later = at('2026-11-23T20:00:00Z');
    expect(calendarDay('Asia/Seoul').positionAt(later).oldestCounted).toBeGreaterThan(calendarDay('UTC').positionAt(later).bucket);
    // Going back a date keeps the later date's charges counted (over-counting, never under-counting).
    const back = calendarDay('America/Los_Angeles').positionAt(at('2026-11-24T02:00:00Z'));
    expect(calendarDay('UTC').positionAt(at('2026-11-24T02:00:00Z')).bucket).toBeGreaterThanOrEqual(back.oldestCounted);
  });

  it('handles days of 23 and 25 hours at DST changes', () => {
    const spring = calendarDay('America/New_York').positionAt(at('2026-03-08T12:00:00Z'));
    expect(spring.bucket * 60_000).toBe(at('2026-03-08T00:00:00Z'));
    expect(spring.expiresAt(spring.bucket)).toBe(at('2026-03-09T04:00:00Z'));
    const autumn = calendarDay('America/New_York').positionAt(at('2026-11-01T12:00:00Z'));
    expect(autumn.bucket * 60_000).toBe(at('2026-11-01T00:00:00Z'));
    expect(autumn.expiresAt(autumn.bucket)).toBe(at('2026-11-02T05:00:00Z'));
  });
});

describe('sliding minute', () => {
  const now = 1_000_000_000_000 + 2_500; // 2.5 s into a 5 s bucket
  const position = MINUTE.positionAt(now);

  it('counts the current bucket and the twelve before it', () => {
    expect(position.bucket - position.oldestCounted).toBe(12);
    expect(position.expiresAt(position.oldestCounted) - now).toBe(2_500);
  });

  it('computes the wait until a cost fits from the oldest buckets forward', () => {
    const b = position.oldestCounted;
    const buckets = [[b, 300], [b + 6, 300], [b + 12, 300]] as const;
    expect(msUntilFits(buckets, 100, 1000, position, now)).toBe(0);
    expect(msUntilFits(buckets, 200, 1000, position, now)).toBe(2_500);
    expect(msUntilFits(buckets, 500, 1000, position, now)).toBe(2_500 + 30_000);
    expect(msUntilFits(buckets, 1001, 1000, position, now)).toBeUndefined();
    expect(msUntilEmpty(buckets, position, now)).toBe(2_500 + 60_000);
    expect(msUntilEmpty([], position, now)).toBe(0);
  });
});

describe('OpenAI reset and retry-after formats', () => {
  it.each([
    [0, '0ms'],
    [20, '20ms'],
    [999.2, '1s'],
    [1_500, '1.5s'],
    [59_999, '59.999s'],
    [60_000, '1m0s'],
    [360_000, '6m0s'],
    [3_723_000, '1h2m3s'],
  ])('%d ms is written %s', (ms, text) => {
    expect(formatResetDuration(ms)).toBe(text);
  });

  it('rounds retry-after up to whole seconds, at least 1', () => {
    expect(retryAfterSeconds(0)).toBe(1);
    expect(retryAfterSeconds(1001)).toBe(2);
    expect(retryAfterSeconds(60_000)).toBe(60);
  });
});
