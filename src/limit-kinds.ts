/**
 * Every kind of limit tokenwarden enforces, as data: the config schema, the counters the engine
 * charges, the windows, the reset lists, /v1/usage and the wording of a 429 are all derived from this
 * table. Adding a kind is adding a row.
 */
export type WindowSpec =
  /** A bucketed sliding window (see quota/windows.ts). */
  | { readonly kind: 'sliding'; readonly lengthMs: number; readonly bucketMs: number }
  /** A calendar period in the configured time zone, reset at its local start. */
  | { readonly kind: 'calendar'; readonly period: 'day' | 'month' };

interface CounterKindShape {
  readonly name: string;
  /** What one admission adds: its tokens, or 1 request. */
  readonly counts: 'tokens' | 'requests';
  readonly window: WindowSpec;
  /** How a 429 names it: "Rate limit reached for m on <wording>". */
  readonly wording: string;
}

export const COUNTER_KINDS = [
  { name: 'tokensPerMinute', counts: 'tokens', window: { kind: 'sliding', lengthMs: 60_000, bucketMs: 5_000 }, wording: 'tokens per minute' },
  { name: 'tokensPerHour', counts: 'tokens', window: { kind: 'sliding', lengthMs: 3_600_000, bucketMs: 60_000 }, wording: 'tokens per hour' },
  { name: 'tokensPerDay', counts: 'tokens', window: { kind: 'calendar', period: 'day' }, wording: 'tokens per day' },
  { name: 'tokensPerMonth', counts: 'tokens', window: { kind: 'calendar', period: 'month' }, wording: 'tokens per month' },
  { name: 'requestsPerMinute', counts: 'requests', window: { kind: 'sliding', lengthMs: 60_000, bucketMs: 5_000 }, wording: 'requests per minute' },
] as const satisfies readonly CounterKindShape[];

export type CounterKind = (typeof COUNTER_KINDS)[number];

export type CounterName = (typeof COUNTER_KINDS)[number]['name'];

/** The concurrency limit is a lease set, not a counter. */
export const CONCURRENCY_LIMIT = { name: 'maxConcurrentRequests', wording: 'concurrent requests' } as const;

export const LIMIT_NAMES = [...COUNTER_KINDS.map((k) => k.name), CONCURRENCY_LIMIT.name] as const;
export type LimitName = CounterName | typeof CONCURRENCY_LIMIT.name;

export const COUNTER_NAMES: readonly CounterName[] = COUNTER_KINDS.map((k) => k.name);

export function counterKind(name: CounterName): CounterKind {
  return COUNTER_KINDS.find((k) => k.name === name)!;
}

/**
 * Pairs of token limits where the first's window lies inside the second's (a minute inside an hour,
 * a day inside a month): a TokenQuota may not set the first above the second.
 */
export const NESTED_TOKEN_LIMITS: ReadonlyArray<readonly [CounterName, CounterName]> = COUNTER_KINDS.filter((k) => k.counts === 'tokens').flatMap(
  (inner, i, kinds) => kinds.slice(i + 1).map((outer) => [inner.name, outer.name] as const),
);

export function wordingOf(name: LimitName): string {
  return name === CONCURRENCY_LIMIT.name ? CONCURRENCY_LIMIT.wording : counterKind(name).wording;
}
