import { Reconciler } from './accounting/reconciler.js';
import { Gatekeeper } from './admission/gatekeeper.js';
import { describeSource } from './config/provenance.js';
import { reloadOutcome, ReloadUnavailableError, type ConfigReload, type ReloadTrigger } from './config/reload.js';
import type { ConfigSnapshot } from './config/snapshot.js';
import { startGrpcServer, type GrpcServer } from './envoy/server.js';
import { startHttpServer, type HttpServer } from './http/server.js';
import type { KubeControllerOptions } from './kube/controller.js';
import { QuotaEngine, type Clock } from './quota/engine.js';
import { MemoryStore } from './quota/memory-store.js';
import { RedisStore, redactUrl } from './quota/redis-store.js';
import type { QuotaStore } from './quota/store.js';
import { createLogger, type Logger } from './telemetry/logger.js';
import { createMetrics } from './telemetry/metrics.js';
import { TokenizerRegistry } from './tokens/registry.js';
import { RateLimitFiles } from './ratelimit/files.js';
import { RateLimitService } from './ratelimit/service.js';
import { MemoryAggregates } from './reports/counter-sets.js';
import { RedisAggregates } from './reports/redis-aggregates.js';
import { UsageReports } from './reports/usage-reports.js';

export interface AppOptions {
  readonly grpcAddr: string;
  readonly httpAddr: string;
  readonly config: ConfigSnapshot;
  readonly store: { kind: 'memory' } | { kind: 'redis'; url: string };
  readonly clock?: Clock;
  readonly logger?: Logger;
  readonly processMetrics?: boolean;
  /** The compiled token-counting worker (tests running from TypeScript sources point at dist/). */
  readonly workerScript?: URL;
  /** A directory of envoyproxy/ratelimit-format rule files (every *.yaml, reloaded live). */
  readonly rateLimitConfigDir?: string;
  /** Take limits, TokenQuotas and API keys from Kubernetes; `config` then only serves until the first sync. */
  readonly kube?: Omit<KubeControllerOptions, 'apply' | 'logger' | 'metrics'>;
  /**
   * Reads and validates the limits again (main.ts: the --config file), resolving to the new snapshot
   * or rejecting with a ConfigError saying why it is refused. What SIGHUP and `POST /v1/admin/reload`
   * run through App.reload; without it (and always with `kube`) reloading is unavailable.
   */
  readonly reloadConfig?: () => Promise<ConfigSnapshot>;
}

export interface App {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly tokenizers: TokenizerRegistry;
  /** Swaps in a new configuration; requests already deciding keep the one they started with. */
  setConfig(config: ConfigSnapshot): void;
  /**
   * Reloads through AppOptions.reloadConfig and swaps the result in, answering what changed and which
   * start-up settings wait for a restart; on a ConfigError (the new limits refused) the current
   * configuration stays. ReloadUnavailableError without reloadConfig or with kube. Reloads run one at
   * a time, and each is logged here, success or refusal, with its trigger.
   */
  reload(trigger: ReloadTrigger): Promise<ConfigReload>;
  close(): Promise<void>;
}

/** Wires the store, engine, gatekeeper and both servers together. */
export async function startApp(options: AppOptions): Promise<App> {
  const logger = options.logger ?? createLogger();
  const userLabel = options.config.settings.metrics.userLabel;
  const metrics = createMetrics({ processMetrics: options.processMetrics ?? false, userLabel });
  const clock = options.clock ?? Date.now;
  let config = options.config;
  const currentConfig = () => config;

  const store = await openStore(options.store, clock, logger);
  const reports = new UsageReports({
    store: store instanceof RedisStore ? new RedisAggregates(store.client) : new MemoryAggregates(clock),
    config: currentConfig,
    clock,
    metrics,
    logger,
  });
  const engine = new QuotaEngine(store, currentConfig, clock, reports);
  const tokenizers = new TokenizerRegistry(config, {
    logger,
    metrics,
    clock,
    ...(options.workerScript ? { workerScript: options.workerScript } : {}),
  });
  const reconciler = new Reconciler({ engine, metrics, logger, userLabel });
  const rateLimitFiles = options.rateLimitConfigDir === undefined ? undefined : new RateLimitFiles(options.rateLimitConfigDir, { logger, metrics });
  try {
    await rateLimitFiles?.load();
  } catch (err) {
    await reports.close();
    await tokenizers.close();
    await store.close();
    throw err;
  }

  const setConfig = (next: ConfigSnapshot) => {
    tokenizers.configure(next);
    config = next;
  };
  let reloading: Promise<unknown> = Promise.resolve();
  const reload = (trigger: ReloadTrigger): Promise<ConfigReload> => {
    const run = async (): Promise<ConfigReload> => {
      // Reloading re-reads the file the limits in force came from.
      const file = config.source.kind === 'file' ? config.source.path : describeSource(config.source);
      try {
        if (options.kube) throw new ReloadUnavailableError('the limits come from Kubernetes (--kube) and are applied live; there is no file to reload');
        if (!options.reloadConfig) throw new ReloadUnavailableError('this instance was started without a limits file to reload');
        const next = await options.reloadConfig();
        const outcome = reloadOutcome(options.config, config, next);
        setConfig(next);
        const { changed, restartRequired } = outcome;
        logger[restartRequired.length ? 'warn' : 'info']({ trigger, config: file, changed, restartRequired }, 'limits reloaded');
        return { ...outcome, source: next.source };
      } catch (err) {
        if (err instanceof ReloadUnavailableError) logger.warn({ trigger, err: err.message }, 'limits reload unavailable');
        else logger.error({ trigger, config: file, err: (err as Error).message }, 'limits reload failed; keeping the previous limits');
        throw err;
      }
    };
    const result = reloading.then(run, run);
    reloading = result.catch(() => undefined);
    return result;
  };
  // Loaded only with --kube: @kubernetes/client-node alone adds ~80 MB to the process.
  const kube = options.kube
    ? new (await import('./kube/controller.js')).KubeController({ ...options.kube, apply: setConfig, logger, metrics })
    : undefined;
  const rateLimit = new RateLimitService({
    rules: () => rateLimitFiles?.current,
    config: currentConfig,
    store,
    engine,
    clock,
    metrics,
    logger,
    userLabel,
    ...(kube ? { configured: () => kube.ready } : {}),
  });
  const gatekeeper = new Gatekeeper({
    config: currentConfig,
    engine,
    clock,
    counter: tokenizers,
    metrics,
    logger,
    usage: reports,
    ...(kube ? { configured: () => kube.ready } : {}),
  });

  let grpc: GrpcServer | undefined;
  let http: HttpServer | undefined;
  try {
    grpc = await startGrpcServer(options.grpcAddr, { gatekeeper, reconciler, rateLimit, metrics, logger });
    http = await startHttpServer(options.httpAddr, {
      config: currentConfig,
      reload: () => reload('http'),
      engine,
      reports,
      tokenizers,
      metrics,
      logger,
      ready: async () => {
        // Every probe pings the store, failOpen or not and configured or not: once a fail-closed replica
        // is NotReady no Check reaches it to count store errors, so the alerts see an outage only
        // through tokenwarden_store_up and the failed pings.
        const storeUp = await store.ping().then(
          () => true,
          () => false,
        );
        metrics.storeUp.set({ store: options.store.kind }, storeUp ? 1 : 0);
        if (!storeUp) metrics.storeErrors.inc({ operation: 'ping' });
        if (kube && !kube.ready) return false;
        // Ready means able to answer: the tokenizers of the first configuration are loaded (or failed).
        if (!tokenizers.initiallyLoaded) return false;
        return storeUp || config.settings.failOpen;
      },
    });
  } catch (err) {
    await grpc?.shutdown(0);
    await reports.close();
    rateLimitFiles?.close();
    await tokenizers.close();
    await store.close();
    throw err;
  }
  kube?.start();
  rateLimitFiles?.watch();
  logger.info({ grpcPort: grpc.port, httpPort: http.port, store: options.store.kind, kube: Boolean(kube) }, 'tokenwarden started');

  return {
    grpcPort: grpc.port,
    httpPort: http.port,
    tokenizers,
    setConfig,
    reload,
    async close() {
      await kube?.stop();
      rateLimitFiles?.close();
      await grpc.shutdown(5000);
      await http.close();
      await reports.close();
      await tokenizers.close();
      await store.close();
    },
  };
}

async function openStore(spec: AppOptions['store'], clock: Clock, logger: Logger): Promise<QuotaStore> {
  if (spec.kind === 'memory') return new MemoryStore(clock);
  const store = new RedisStore(spec.url);
  try {
    await store.connect();
  } catch (err) {
    // Not fatal: the client keeps reconnecting, and /readyz reports the store until it answers.
    logger.warn({ redis: redactUrl(spec.url), err: (err as Error).message }, 'Redis not reachable yet');
  }
  return store;
}
