import type { ConfigSnapshot } from '../../config/snapshot.js';
import type { QuotaEngine } from '../../quota/engine.js';
import type { UsageReports } from '../../reports/usage-reports.js';
import type { Logger } from '../../telemetry/logger.js';
import type { Metrics } from '../../telemetry/metrics.js';
import type { PromptTokenCounter } from '../../tokens/counter.js';

/** What the usage page reads: a subset of HttpDeps. */
export interface UiDeps {
  readonly config: () => ConfigSnapshot;
  readonly engine: QuotaEngine;
  readonly tokenizers: PromptTokenCounter;
  readonly metrics: Metrics;
  readonly reports: UsageReports;
  readonly logger: Logger;
}
