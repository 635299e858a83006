import { createHash } from 'node:crypto';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { startApp, type App, type AppOptions } from '../../src/app.js';
import { parseLimitsYaml } from '../../src/config/load.js';
import type { Clock } from '../../src/quota/engine.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { EnvoyCheckClient } from '../../src/envoy/check-client.js';

export type StoreKind = 'memory' | 'redis';

/** The admin token every test app accepts unless its config names its own. */
export const TEST_ADMIN_TOKEN = 'test-admin-token';
/** Headers for tokenwarden's HTTP API as the admin. */
export const ADMIN = { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } as const;

/**
 * The config as tests run it: the test admin token added when it configures none, and no counting
 * worker unless it asks for one (a worker loads its own tokenizer, about a second, in every app).
 */
function forTests(configYaml: string): string {
  const config = (parseYaml(configYaml) ?? {}) as { admin?: { tokenSha256?: string }; tokenization?: { workers?: number } };
  return stringifyYaml({
    ...config,
    admin: { ...config.admin, tokenSha256: config.admin?.tokenSha256 ?? createHash('sha256').update(TEST_ADMIN_TOKEN).digest('hex') },
    tokenization: { ...config.tokenization, workers: config.tokenization?.workers ?? 0 },
  });
}

export interface TestApp {
  readonly app: App;
  readonly envoy: EnvoyCheckClient;
  readonly http: string;
  close(): Promise<void>;
}

/** tokenwarden on loopback ports chosen by the OS, with an Envoy stand-in pointed at it. */
export async function startTestApp(options: {
  configYaml: string;
  store: { kind: 'memory' } | { kind: 'redis'; url: string };
  clock?: Clock;
  kube?: AppOptions['kube'];
  rateLimitConfigDir?: string;
  /** Return before the tokenizers have loaded (default: wait, as Envoy waits for /readyz). */
  waitForTokenizers?: boolean;
}): Promise<TestApp> {
  const app = await startApp({
    grpcAddr: '127.0.0.1:0',
    httpAddr: '127.0.0.1:0',
    config: parseLimitsYaml(forTests(options.configYaml), 'test config'),
    store: options.store,
    logger: createLogger(process.env['TEST_LOG'] ?? 'silent'),
    // The TypeScript sources run under vitest, but worker threads need the compiled worker (make build).
    workerScript: new URL('../../dist/tokens/count-worker.js', import.meta.url),
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.kube ? { kube: options.kube } : {}),
    ...(options.rateLimitConfigDir ? { rateLimitConfigDir: options.rateLimitConfigDir } : {}),
  });
  // As Envoy would only send traffic once /readyz says so: every tokenizer loaded (or failed).
  if (options.waitForTokenizers !== false) {
    await app.tokenizers.settled();
    while (!app.tokenizers.initiallyLoaded) await new Promise((r) => setTimeout(r, 10));
  }
  const envoy = new EnvoyCheckClient(`127.0.0.1:${app.grpcPort}`);
  return {
    app,
    envoy,
    http: `http://127.0.0.1:${app.httpPort}`,
    async close() {
      envoy.close();
      await app.close();
    },
  };
}

/** A clock tests move by hand. */
export function manualClock(startMs: number) {
  let now = startMs;
  const clock: Clock & { advance(ms: number): void; set(ms: number): void } = Object.assign(() => now, {
    advance(ms: number) {
      now += ms;
    },
    set(ms: number) {
      now = ms;
    },
  });
  return clock;
}
