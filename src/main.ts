#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';

const USAGE = `tokenwarden — per-user, per-model LLM token quotas for Envoy

Options (each also read from the environment variable shown):
  --grpc-addr ADDR    TOKENWARDEN_GRPC_ADDR   gRPC (ext_authz, ratelimit, access log, health) [0.0.0.0:9001]
  --http-addr ADDR    TOKENWARDEN_HTTP_ADDR   health, metrics, usage API   [0.0.0.0:8080]
  --config PATH       TOKENWARDEN_CONFIG      limits file                  [config/limits.yaml]
  --store KIND        TOKENWARDEN_STORE       memory | redis               [memory]
  --redis-url URL     TOKENWARDEN_REDIS_URL   redis://, rediss://, redis+sentinel://h:p,h:p/master
  --ratelimit-config DIR  TOKENWARDEN_RATELIMIT_CONFIG  envoyproxy/ratelimit rule files (*.yaml, reloaded live)
  --kube              TOKENWARDEN_KUBE=1      limits from the ConfigMap, TokenQuotas and API-key Secrets
  --namespace NS      TOKENWARDEN_NAMESPACE   where to watch them     [the pod's namespace]
  --configmap NAME    TOKENWARDEN_CONFIGMAP   the limits ConfigMap    [tokenwarden-limits]
  --help
Log level: TOKENWARDEN_LOG_LEVEL (info).  SIGHUP reloads the limits file (without --kube).
With --kube the Lease identity is POD_NAME (else the host name).
POST /v1/admin/reload (admin token) does what SIGHUP does and answers what changed.

  tokenwarden explain USER [MODEL]   where each limit of USER comes from, asked of a running
                                     instance (tokenwarden explain --help)`;

async function main(): Promise<void> {
  if (process.argv[2] === 'explain') {
    process.exitCode = await (await import('./cli/explain.js')).explainCommand(process.argv.slice(3));
    return;
  }
  // Imported here, not above: `tokenwarden explain` starts without loading the server's modules.
  const [{ startApp }, { loadLimitsFile, parseLimitsYaml }, { createLogger }] = await Promise.all([
    import('./app.js'),
    import('./config/load.js'),
    import('./telemetry/logger.js'),
  ]);
  const { values } = parseArgs({
    options: {
      'grpc-addr': { type: 'string' },
      'http-addr': { type: 'string' },
      config: { type: 'string' },
      store: { type: 'string' },
      'redis-url': { type: 'string' },
      'ratelimit-config': { type: 'string' },
      kube: { type: 'boolean' },
      namespace: { type: 'string' },
      configmap: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const env = process.env;
  const grpcAddr = values['grpc-addr'] ?? env['TOKENWARDEN_GRPC_ADDR'] ?? '0.0.0.0:9001';
  const httpAddr = values['http-addr'] ?? env['TOKENWARDEN_HTTP_ADDR'] ?? '0.0.0.0:8080';
  const configPath = values.config ?? env['TOKENWARDEN_CONFIG'] ?? 'config/limits.yaml';
  const storeKind = values.store ?? env['TOKENWARDEN_STORE'] ?? 'memory';
  const redisUrl = values['redis-url'] ?? env['TOKENWARDEN_REDIS_URL'];
  const kube = values.kube ?? env['TOKENWARDEN_KUBE'] === '1';
  const rateLimitConfigDir = values['ratelimit-config'] ?? env['TOKENWARDEN_RATELIMIT_CONFIG'];

  if (storeKind !== 'memory' && storeKind !== 'redis') throw new Error(`--store must be memory or redis, not "${storeKind}"`);
  if (storeKind === 'redis' && !redisUrl) throw new Error('--store redis needs --redis-url (or TOKENWARDEN_REDIS_URL)');
  const logger = createLogger();
  // Installed before start-up (a SIGHUP would otherwise end the process while it starts): a reload asked
  // for before the app exists runs once it does; with --kube there is no file to reload.
  let reload: () => void = () => (reloadWhenStarted = true);
  let reloadWhenStarted = false;
  process.on('SIGHUP', () => {
    if (kube) logger.warn('SIGHUP ignored: with --kube the limits come from Kubernetes and apply live');
    else reload();
  });
  const app = await startApp({
    grpcAddr,
    httpAddr,
    // With --kube nothing is served until the ConfigMap has been read (/readyz says so).
    config: kube ? parseLimitsYaml('{}', 'empty') : await loadLimitsFile(configPath),
    store: storeKind === 'redis' ? { kind: 'redis', url: redisUrl! } : { kind: 'memory' },
    logger,
    processMetrics: true,
    ...(rateLimitConfigDir ? { rateLimitConfigDir } : {}),
    ...(kube ? { kube: await kubeOptions(values.namespace, values.configmap) } : { reloadConfig: () => loadLimitsFile(configPath) }),
  });

  // The same reload as POST /v1/admin/reload; app.reload logs its outcome, refusals included.
  reload = () => void app.reload('signal').catch(() => undefined);
  if (reloadWhenStarted) reload();
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function kubeOptions(namespaceFlag: string | undefined, configMapFlag: string | undefined) {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromDefault();
  return {
    kubeConfig,
    namespace: namespaceFlag ?? process.env['TOKENWARDEN_NAMESPACE'] ?? podNamespace() ?? 'default',
    configMapName: configMapFlag ?? process.env['TOKENWARDEN_CONFIGMAP'] ?? 'tokenwarden-limits',
    identity: process.env['POD_NAME'] ?? hostname(),
  };
}

function podNamespace(): string | undefined {
  try {
    return readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/namespace', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

main().catch((err: Error) => {
  console.error(`tokenwarden: ${err.message}`);
  process.exit(1);
});
