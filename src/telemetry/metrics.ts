import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type Metrics = ReturnType<typeof createMetrics>;

/** Every metric of one tokenwarden instance, in its own registry. */
export function createMetrics(options: { processMetrics?: boolean; userLabel?: boolean } = {}) {
  const registry = new Registry();
  if (options.processMetrics) collectDefaultMetrics({ register: registry });
  return {
    registry,
    decisions: new Counter({
      name: 'tokenwarden_decisions_total',
      help: 'Check decisions by result (allowed, denied, abandoned, error) and the reason or limit that decided.',
      labelNames: ['result', 'reason'] as const,
      registers: [registry],
    }),
    rateLimitDecisions: new Counter({
      name: 'tokenwarden_ratelimit_decisions_total',
      help: 'ShouldRateLimit answers by domain (configured domains only) and result (ok, over_limit).',
      labelNames: ['domain', 'result'] as const,
      registers: [registry],
    }),
    rateLimitHits: new Counter({
      name: 'tokenwarden_ratelimit_hits_total',
      help: "Hits on rate-limit rules, as envoyproxy/ratelimit's per-rule stats: stat is total_hits, within_limit, near_limit, over_limit or shadow_mode; rule is the configured rule's key.",
      labelNames: ['rule', 'stat'] as const,
      registers: [registry],
    }),
    rateLimitConfigInvalid: new Gauge({
      name: 'tokenwarden_ratelimit_config_invalid',
      help: '1 while the rate-limit rule files on disk are refused (the last good rules keep serving).',
      registers: [registry],
    }),
    shadowDenials: new Counter({
      name: 'tokenwarden_shadow_denials_total',
      help: 'Admissions a limit in shadow mode would have denied (they were allowed), by limit and model.',
      labelNames: ['limit', 'model'] as const,
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
    accessLogEntries: new Counter({
      name: 'tokenwarden_accesslog_entries_total',
      help: 'Access-log entries received, by outcome (settled, duplicate, expired, not_reserved, failed).',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    accessLogStreams: new Gauge({
      name: 'tokenwarden_accesslog_streams',
      help: 'Open StreamAccessLogs connections (one per Envoy worker thread).',
      registers: [registry],
    }),
    settlements: new Counter({
      name: 'tokenwarden_settlements_total',
      help: 'Reservations settled, by rule (usage, not_forwarded, rejected_by_model_server, client_gone, upstream_timeout, upstream_failure, usage_missing).',
      labelNames: ['rule', 'model'] as const,
      registers: [registry],
    }),
    tokensCharged: new Counter({
      name: 'tokenwarden_tokens_charged_total',
      help:
        'Tokens finally charged, by kind (prompt and completion at settlement; descriptor: charged through the rate-limit service\'s token descriptors) and model' +
        (options.userLabel ? ' and user.' : '.'),
      labelNames: options.userLabel ? (['kind', 'model', 'user'] as const) : (['kind', 'model'] as const),
      registers: [registry],
    }),
    reservationError: new Histogram({
      name: 'tokenwarden_reservation_error_tokens',
      help: 'Reserved minus actual tokens for requests whose usage was reported (positive: reserved too much).',
      labelNames: ['model'] as const,
      buckets: [-4096, -1024, -256, -64, 0, 64, 256, 1024, 4096, 16384],
      registers: [registry],
    }),
    configGeneration: new Gauge({
      name: 'tokenwarden_config_generation',
      help: 'How many configurations have been applied since start (each Kubernetes change or resync adds one).',
      registers: [registry],
    }),
    configLastApply: new Gauge({
      name: 'tokenwarden_config_last_apply_timestamp_seconds',
      help: 'When the current configuration was applied (unix seconds).',
      registers: [registry],
    }),
    configMapInvalid: new Gauge({
      name: 'tokenwarden_configmap_invalid',
      help: '1 while the limits ConfigMap is missing or invalid (the last good one keeps serving).',
      registers: [registry],
    }),
    kubeObjectsRejected: new Gauge({
      name: 'tokenwarden_kube_objects_rejected',
      help: 'TokenQuotas not applied (invalid, unknown model, or wholly overridden) and API-key Secret entries refused.',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    kubeWatchErrors: new Counter({
      name: 'tokenwarden_kube_watch_errors_total',
      help: 'Watch or list failures, by informer (each is retried with backoff).',
      labelNames: ['informer'] as const,
      registers: [registry],
    }),
    leader: new Gauge({
      name: 'tokenwarden_leader',
      help: '1 on the replica that holds the lease and writes TokenQuota statuses.',
      registers: [registry],
    }),
    storeErrors: new Counter({
      name: 'tokenwarden_store_errors_total',
      help: 'Quota store operations that failed, by operation (reserve, settle, rate_limit, usage, ping: a /readyz ping).',
      labelNames: ['operation'] as const,
      registers: [registry],
    }),
    /**
     * Set by every /readyz ping. A fail-closed replica whose store is down turns NotReady and then
     * receives no Check that could count store errors: this gauge (and store_errors_total{operation="ping"})
     * is how the alerts still see the outage. No series until the first probe.
     */
    storeUp: new Gauge({
      name: 'tokenwarden_store_up',
      help: '1 when the quota store (store: redis or memory) answered the last /readyz ping, 0 when it did not.',
      labelNames: ['store'] as const,
      registers: [registry],
    }),
    modelDecisions: new Counter({
      name: 'tokenwarden_model_decisions_total',
      help: 'Checks that reached the quota of a configured model, by model and result (allowed, rate_limited: answered 429 by a limit).',
      labelNames: ['model', 'result'] as const,
      registers: [registry],
    }),
    userQuota: userQuotaGauge(registry, options.userLabel ?? false),
  };
}

/** The windows whose share used is exported per user: the calendar ones (sliding windows refill within the hour). */
const USER_QUOTA_WINDOWS: ReadonlySet<string> = new Set(['tokensPerDay', 'tokensPerMonth']);

/**
 * tokenwarden_quota_used_ratio{user,model,window}: the share of a user's daily or monthly token limit
 * in use at their last admission on this replica (that request's reservation counted in full). Only with
 * metrics.userLabel: one series per user, model and limited calendar window. A series is dropped when
 * its window resets, so an idle user is not reported near their quota in the next day or month.
 */
function userQuotaGauge(registry: Registry, enabled: boolean) {
  const resets = new Map<string, { labels: { user: string; model: string; window: string }; atMs: number }>();
  const gauge: Gauge<'user' | 'model' | 'window'> = new Gauge({
    name: 'tokenwarden_quota_used_ratio',
    help: "Share of a user's daily or monthly token limit used, as of the user's last admission (or refusal by that limit) on this replica (only with metrics.userLabel).",
    labelNames: ['user', 'model', 'window'] as const,
    registers: enabled ? [registry] : [],
    collect() {
      const now = Date.now();
      for (const [key, { labels, atMs }] of resets) {
        if (atMs > now) continue;
        gauge.remove(labels);
        resets.delete(key);
      }
    },
  });
  return {
    gauge,
    /** Records the windows' state after an admission, or the denying window's (nothing without metrics.userLabel). */
    observe(user: string, model: string, windows: readonly { name: string; limit: number; remaining: number; resetMs: number }[]): void {
      if (!enabled) return;
      const now = Date.now();
      for (const { name, limit, remaining, resetMs } of windows) {
        if (!USER_QUOTA_WINDOWS.has(name) || limit <= 0) continue;
        const labels = { user, model, window: name };
        gauge.set(labels, (limit - remaining) / limit);
        resets.set(JSON.stringify([user, model, name]), { labels, atMs: now + resetMs });
      }
    },
  };
}
