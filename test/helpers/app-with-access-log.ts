import { afterEach, beforeEach } from 'vitest';
import { AccessLogStandIn } from './access-log-stand-in.js';
import { startTestApp, type manualClock, type StoreKind, type TestApp } from './app.js';
import type { RedisServer } from './redis-server.js';

/**
 * A fresh app per test on the given store (Redis flushed first), with an access-log stream to it,
 * its clock set back to `startMs`; both are closed after each test.
 */
export function appWithAccessLogPerTest(options: {
  configYaml: string;
  store: StoreKind;
  redis: { readonly server: RedisServer };
  clock: ReturnType<typeof manualClock>;
  startMs: number;
}): { readonly t: TestApp; readonly als: AccessLogStandIn } {
  let t: TestApp | undefined;
  let als: AccessLogStandIn | undefined;
  beforeEach(async () => {
    options.clock.set(options.startMs);
    if (options.store === 'redis') await options.redis.server.client().flushall();
    const store = options.store === 'memory' ? ({ kind: 'memory' } as const) : ({ kind: 'redis', url: options.redis.server.url } as const);
    t = await startTestApp({ configYaml: options.configYaml, store, clock: options.clock });
    als = new AccessLogStandIn(t.app.grpcPort);
  });
  afterEach(async () => {
    await als?.end();
    als?.close();
    await t?.close();
  });
  return {
    get t() {
      return t!;
    },
    get als() {
      return als!;
    },
  };
}
