import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { parseLimitsYaml } from '../src/config/load.js';
import { mergeKubeState } from '../src/kube/merge.js';
import { rateLimitServiceDefinition } from '../src/ratelimit/grpc.js';
import { parseRateLimitFiles } from '../src/ratelimit/config.js';
import { RateLimitService } from '../src/ratelimit/service.js';
import { MemoryStore } from '../src/quota/memory-store.js';
import { QuotaEngine } from '../src/quota/engine.js';
import { StoreUnavailableError } from '../src/quota/store.js';
import { createLogger } from '../src/telemetry/logger.js';
import { createMetrics } from '../src/telemetry/metrics.js';
import { ADMIN, manualClock, startTestApp, type TestApp } from './helpers/app.js';
import { askRls, rlsClient, rulesDirForThisFile, type Descriptor, type RlsClient } from './helpers/rls-client.js';

/*
 * Review 10: the rate-limit service (ShouldRateLimit), token descriptors, tokensPerMonth and shadow
 * mode. Every test here states the behaviour a client, a migrating envoyproxy/ratelimit user or an
 * operator is entitled to; each failing one is a defect.
 */
const rulesDir = rulesDirForThisFile();


let t: TestApp | undefined;
let client: RlsClient | undefined;
afterEach(async () => {
  client?.close();
  client = undefined;
  await t?.close();
  t = undefined;
});

const clock = manualClock(Date.UTC(2026, 10, 23, 10, 0, 0));
async function start(options: { configYaml: string; rules?: Record<string, string>; kube?: Parameters<typeof startTestApp>[0]['kube'] }) {
  clock.set(Date.UTC(2026, 10, 23, 10, 0, 0));
  t = await startTestApp({
    configYaml: options.configYaml,
    store: { kind: 'memory' },
    clock,
    ...(options.rules ? { rateLimitConfigDir: rulesDir(options.rules) } : {}),
    ...(options.kube ? { kube: options.kube } : {}),
  });
  client = rlsClient(t.app.grpcPort);
}
const ask = (domain: string, descriptors: Descriptor[], hitsAddend = 0) => askRls(client!, domain, descriptors, hitsAddend);
async function usageOf(user: string, window: string): Promise<number> {
  const usage = (await (await fetch(`${t!.http}/v1/usage/${user}?model=m`, { headers: ADMIN })).json()) as any;
  return usage.models[0].windows.find((w: { window: string }) => w.window === window).used;
}
async function metric(pattern: RegExp): Promise<number> {
  return Number(pattern.exec(await (await fetch(`${t!.http}/metrics`)).text())?.[1] ?? 0);
}

const TOKENS = 'rateLimitService: { tokenDescriptors: { domain: tokens } }\n';
const alice = (hits: number): Descriptor => ({ entries: [['user', 'alice'], ['model', 'm']], hits });

describe('token descriptors (client attacks)', () => {
  it('tokens reported after the response (hits_addend at stream end) are charged even when they overshoot: an overshooting request is not free', async () => {
    await start({ configYaml: `models: { m: {} }\nusers: { alice: { limits: { tokensPerMinute: 100 } } }\n${TOKENS}` });
    expect((await ask('tokens', [alice(90)])).overall_code).toBe('OK');
    // Envoy reports what the response really used (apply_on_stream_done): the tokens are spent either way.
    await ask('tokens', [alice(5000)]);
    await ask('tokens', [alice(5000)]);
    // As with rule descriptors ("denied hits count"), the window must now be over: the next
    // check-only descriptor (hits_addend 0) is over limit. Today it is OK and 10 000 tokens went uncounted.
    expect(await usageOf('alice', 'tokensPerMinute')).toBeGreaterThanOrEqual(10_090);
    expect((await ask('tokens', [alice(0)])).overall_code).toBe('OVER_LIMIT');
  });

  it('hits_addend 0 on a token descriptor checks without counting (README: "0 checks without counting")', async () => {
    await start({ configYaml: `models: { m: {} }\nusers: { alice: { limits: { tokensPerDay: 1000, requestsPerMinute: 2 } } }\n${TOKENS}` });
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push((await ask('tokens', [alice(0)])).overall_code);
    // Each check-only call is charged a request against requestsPerMinute: the third is refused.
    expect(codes).toEqual(['OK', 'OK', 'OK']);
    expect(await usageOf('alice', 'requestsPerMinute')).toBe(0);
  });

  it('a descriptor in the token domain naming a model tokenwarden does not know is not allowed for free', async () => {
    await start({ configYaml: `models: { m: {} }\ndefaults: { tokensPerMinute: 10 }\n${TOKENS}` });
    // ext_authz refuses an unconfigured model (404 unknown_model); here it is OK and uncounted, every time.
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push((await ask('tokens', [{ entries: [['user', 'alice'], ['model', 'M']], hits: 1_000_000 }])).overall_code);
    expect(answers).not.toEqual(['OK', 'OK', 'OK']);
  });

  it('a shadow limit a token descriptor goes over is reported, as on the ext_authz path', async () => {
    await start({ configYaml: `models: { m: {} }\nusers: { alice: { limits: { tokensPerDay: 10, shadow: true } } }\n${TOKENS}` });
    expect((await ask('tokens', [alice(50)])).overall_code).toBe('OK');
    expect(await metric(/^tokenwarden_shadow_denials_total\{limit="tokensPerDay",model="m"\} (\d+)$/m)).toBe(1);
  });

  it('before the first Kubernetes sync, a token descriptor is not allowed uncounted (Check answers 503 then)', async () => {
    // An apiserver that never answers: the controller never becomes ready, as after a restart during an apiserver outage.
    const kc = new KubeConfig();
    kc.loadFromClusterAndUser({ name: 'down', server: 'https://127.0.0.1:1', skipTLSVerify: true }, { name: 'tokenwarden', token: 't' });
    await start({
      configYaml: '{}',
      kube: { kubeConfig: kc, namespace: 'llm', configMapName: 'tokenwarden-limits', identity: 'pod-a' },
    });
    const answer = await ask('tokens', [alice(1_000_000)]).catch((err: grpc.ServiceError) => ({ overall_code: `error ${err.code}`, statuses: [] }));
    expect(answer.overall_code).toBe('OVER_LIMIT');
  });
});

describe('migrating from envoyproxy/ratelimit with unchanged config files', () => {
  it('quota_mode: an unlimited quota descriptor is not a quota descriptor (upstream ratelimit.go:222-246), so the over-limit one still denies', async () => {
    const rules = `
domain: q
descriptors:
  - key: plan
    value: vip
    quota_mode: true
    rate_limit: { unlimited: true }
  - key: plan
    quota_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
`;
    await start({ configYaml: 'models: { m: {} }\n', rules: { 'q.yaml': rules } });
    const request: Descriptor[] = [{ entries: [['plan', 'vip']] }, { entries: [['plan', 'free']] }];
    expect((await ask('q', request)).overall_code).toBe('OK');
    const second = await ask('q', request);
    expect(second.statuses.map((s) => s.code)).toEqual(['OK', 'OVER_LIMIT']);
    // Upstream: isUnlimited descriptors skip the quota bookkeeping; totalQuota = failedQuota = 1 => OVER_LIMIT.
    expect(second.overall_code).toBe('OVER_LIMIT');
  });

  it('rule files named *.yml (upstream loads every file of its config directory) are loaded, not silently ignored', async () => {
    const rules = 'domain: edge\ndescriptors:\n  - key: remote_address\n    rate_limit: { unit: minute, requests_per_unit: 1 }\n';
    await start({ configYaml: 'models: { m: {} }\n', rules: { 'config.yml': rules } });
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push((await ask('edge', [{ entries: [['remote_address', '10.0.0.7']] }])).overall_code);
    expect(codes).toEqual(['OK', 'OVER_LIMIT', 'OVER_LIMIT']);
  });
});

describe('shadow mode', () => {
  it('a shadow TokenQuota trying a stricter quota does not loosen the enforced ConfigMap limit it lies over', () => {
    const result = mergeKubeState(
      {
        configMapText: 'defaults: { tokensPerDay: 1000000 }\nmodels: { m: {} }\nusers: { alice: { limits: { tokensPerDay: 800 } } }\n',
        tokenQuotas: [
          {
            metadata: { namespace: 'ns', name: 'trial', creationTimestamp: '2026-11-01T00:00:00Z' },
            spec: { subjects: { users: ['alice'] }, models: ['*'], limits: { tokensPerDay: 500 }, shadow: true },
          },
        ],
        secrets: [],
      },
      undefined,
    );
    expect(result.snapshot!.shadowLimitsFor('alice', 'm')).toEqual({ tokensPerDay: 500 });
    // Today alice's enforced 800 is gone and the defaults' 1 000 000 applies: trying a quota loosened hers 1250-fold.
    expect(result.snapshot!.limitsFor('alice', 'm')).toEqual({ tokensPerDay: 800 });
  });
});

describe('operator at 3 a.m.', () => {
  it('Redis down: the warning is not repeated for every ShouldRateLimit call (ext_authz logs none per call)', async () => {
    let lines = 0;
    const logger = createLogger('info', { write: () => void lines++ });
    const store = new MemoryStore();
    store.addHits = async () => {
      throw new StoreUnavailableError('Redis: connect ECONNREFUSED');
    };
    const config = parseLimitsYaml('models: { m: {} }\n', 't');
    const rules = parseRateLimitFiles([{ name: 'edge.yaml', text: 'domain: edge\ndescriptors:\n  - key: ip\n    rate_limit: { unit: second, requests_per_unit: 100 }\n' }]);
    const service = new RateLimitService({
      rules: () => rules, config: () => config, store, engine: new QuotaEngine(store, () => config), clock: Date.now, metrics: createMetrics(), logger,
    });
    for (let i = 0; i < 1000; i++) {
      const answer = await service.shouldRateLimit({ domain: 'edge', hitsAddend: 0, descriptors: [{ entries: [{ key: 'ip', value: `10.0.0.${i % 250}` }] }] });
      expect(answer.overallCode).toBe('OVER_LIMIT');
    }
    await store.close();
    // 1000 Envoy calls during an outage write 1000 identical warn lines (at 5k rps: 5k lines/s).
    expect(lines).toBeLessThan(50);
  });
});

describe('holds up', () => {
  it('odd names and hits: __proto__/constructor users and keys, hits_addend 0 / 2^64-1, unknown users get the defaults', async () => {
    const rules = 'domain: edge\ndescriptors:\n  - key: __proto__\n    rate_limit: { unit: minute, requests_per_unit: 1 }\n  - key: constructor\n    value: toString\n    rate_limit: { unit: minute, requests_per_unit: 1 }\n';
    await start({ configYaml: `models: { m: {} }\ndefaults: { tokensPerMinute: 100 }\n${TOKENS}`, rules: { 'edge.yaml': rules } });
    expect([(await ask('edge', [{ entries: [['__proto__', 'x']] }])).overall_code, (await ask('edge', [{ entries: [['__proto__', 'x']] }])).overall_code]).toEqual(['OK', 'OVER_LIMIT']);
    expect([(await ask('edge', [{ entries: [['constructor', 'toString']] }])).overall_code, (await ask('edge', [{ entries: [['constructor', 'toString']] }])).overall_code]).toEqual(['OK', 'OVER_LIMIT']);
    expect((await ask('edge', [{ entries: [['constructor', 'valueOf']] }])).statuses[0]).toEqual({ code: 'OK', limit_remaining: 0 });
    const proto = (hits: number): Descriptor => ({ entries: [['user', '__proto__'], ['model', 'm']], hits });
    expect((await ask('tokens', [proto(60)])).overall_code).toBe('OK');
    expect((await ask('tokens', [proto(60)])).overall_code).toBe('OVER_LIMIT');
    expect((await ask('tokens', [{ entries: [['user', 'nobody'], ['model', 'm']], hits: 2 ** 64 - 1 }])).overall_code).toBe('OVER_LIMIT');
    expect((await ask('edge', [{ entries: [['__proto__', 'y']], hits: 2 ** 64 - 1 }])).overall_code).toBe('OVER_LIMIT');
  });
});
