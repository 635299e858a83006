import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type Metrics = ReturnType<typeof createMetrics>;

/** Every metric of one tokenwarden instance, in its own registry. */
export function createMetrics(options: { processMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (options.processMetrics) collectDefaultMetrics({ register: registry });
  return {
    registry,
    decisions: new Counter({
      name: 'tokenwarden_decisions_total',
      help: 'Check decisions by result (allowed, denied, error) and the reason or limit that decided.',
      labelNames: ['result', 'reason'] as const,
      registers: [registry],
    }),
    checkDuration: new Histogram({
      name: 'tokenwarden_check_duration_seconds',
      help: 'Time to answer an ext_authz Check.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1],
      registers: [registry],
    }),
    reservedTokens: new Counter({
      name: 'tokenwarden_reserved_tokens_total',
      help: 'Tokens reserved at admission (prompt plus expected completion), by model.',
      labelNames: ['model'] as const,
      registers: [registry],
    }),
    tokenizeDuration: new Histogram({
      name: 'tokenwarden_tokenize_duration_seconds',
      help: 'Time to count a prompt, by where it ran (main thread or worker).',
      labelNames: ['thread'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    storeErrors: new Counter({
      name: 'tokenwarden_store_errors_total',
      help: 'Quota store operations that failed, by operation.',
      labelNames: ['operation'] as const,
      registers: [registry],
    }),
  };
}
