import type { Metrics } from '../../telemetry/metrics.js';

/** The results tokenwarden_decisions_total counts; listed so a result never seen yet reads 0. */
const RESULTS = ['allowed', 'denied', 'abandoned', 'error'] as const;

export interface DecisionCounts {
  /** When the counters were read (ms since the epoch): the page divides by the time between two reads. */
  readonly atMs: number;
  /** This replica's Check decisions since it started, by result (summed over reasons). */
  readonly results: Readonly<Record<string, number>>;
}

export async function decisionCounts(metrics: Metrics, nowMs: number): Promise<DecisionCounts> {
  const results = new Map<string, number>(RESULTS.map((r) => [r, 0]));
  for (const { labels, value } of (await metrics.decisions.get()).values) {
    const result = String(labels.result ?? 'unknown');
    results.set(result, (results.get(result) ?? 0) + value);
  }
  return { atMs: nowMs, results: Object.fromEntries(results) };
}
