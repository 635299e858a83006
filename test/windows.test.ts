import { describe, expect, it } from 'vitest';
import { formatResetDuration, retryAfterSeconds } from '../src/openai/responses.js';
import { calendarDay, msUntilEmpty, msUntilFits, slidingWindow } from '../src/quota/windows.js';

const MINUTE = slidingWindow(60_000, 5_000);

describe('calendar day', () => {
  const at = (iso: string) => Date.parse(iso);

  it('counts quarter hours from local midnight and ends at the next', () => {
    const seoul = calendarDay('Asia/Seoul').positionAt(at('2026-11-23T14:59:59Z'));
    expect(seoul.oldestCounted * 60_000).toBe(at('2026-11-22T15:00:00Z'));
    expect(seoul.bucket * 60_000).toBe(at('2026-11-23T14:45:00Z'));
    expect(seoul.expiresAt(seoul.bucket)).toBe(at('2026-11-23T15:00:00Z'));
    const next = calendarDay('Asia/Seoul').positionAt(at('2026-11-23T15:00:00Z'));
    expect(next.oldestCounted).toBe(next.bucket);
    expect(next.expiresAt(next.bucket)).toBe(at('2026-11-24T15:00:00Z'));
    const kathmandu = calendarDay('Asia/Kathmandu').positionAt(at('2026-11-23T12:00:00Z')); // UTC+05:45
    expect(kathmandu.oldestCounted * 60_000).toBe(at('2026-11-22T18:15:00Z'));
  });

  it('handles days of 23 and 25 hours at DST changes', () => {
    const spring = calendarDay('America/New_York').positionAt(at('2026-03-08T12:00:00Z'));
    expect(spring.oldestCounted * 60_000).toBe(at('2026-03-08T05:00:00Z'));
    expect(spring.expiresAt(spring.bucket)).toBe(at('2026-03-09T04:00:00Z'));
    const autumn = calendarDay('America/New_York').positionAt(at('2026-11-01T12:00:00Z'));
    expect(autumn.oldestCounted * 60_000).toBe(at('2026-11-01T04:00:00Z'));
    expect(autumn.expiresAt(autumn.bucket)).toBe(at('2026-11-02T05:00:00Z'));
  });

  it('starts a day whose midnight DST skips where its clock jumps into it (Santiago, Azores)', () => {
    // Chile springs forward at 24:00 on 5 Sep 2026: 6 Sep starts at 01:00 local, 04:00 UTC.
    const santiago = calendarDay('America/Santiago').positionAt(at('2026-09-06T12:00:00Z'));
    expect(santiago.oldestCounted * 60_000).toBe(at('2026-09-06T04:00:00Z'));
    const eve = calendarDay('America/Santiago').positionAt(at('2026-09-06T03:30:00Z')); // 23:30 on the 5th
    expect(eve.expiresAt(eve.bucket)).toBe(at('2026-09-06T04:00:00Z'));
    expect(eve.ttlMs).toBeGreaterThan(24 * 3600_000);
  });

  it('places buckets by absolute time, so a zone change only moves where counting starts', () => {
    const now = at('2026-11-23T20:00:00Z');
    const utc = calendarDay('UTC').positionAt(now);
    const seoul = calendarDay('Asia/Seoul').positionAt(now); // already 24 Nov there, since 15:00 UTC
    expect(seoul.bucket).toBe(utc.bucket);
    expect(seoul.oldestCounted * 60_000).toBe(at('2026-11-23T15:00:00Z'));
    expect(utc.oldestCounted * 60_000).toBe(at('2026-11-23T00:00:00Z'));
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
