import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ENVOY_PROTO_DIRS, PROTO_LOADER_OPTIONS } from '../src/envoy/protos.js';
import { rateLimitServiceDefinition } from '../src/ratelimit/grpc.js';
import { ADMIN, manualClock, startTestApp, type TestApp } from './helpers/app.js';
import { redisForThisFile, startRedisServer } from './helpers/redis-server.js';
import { askRls, rlsClient, rulesDirForThisFile, type Answer, type Descriptor, type Entry, type RlsClient } from './helpers/rls-client.js';

/*
 * envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit over real gRPC, with envoyproxy/ratelimit
 * configuration files (cases from its README's examples, in our own words), on both stores.
 */
const redisFile = redisForThisFile();
const rulesDir = rulesDirForThisFile();

const RULES = `
domain: edge
descriptors:
  # Every remote address: 3 per minute; one address is allowed more, one is unlimited.
  - key: remote_address
    rate_limit: { unit: minute, requests_per_unit: 3 }
  - key: remote_address
    value: 10.0.0.9
    rate_limit: { unit: minute, requests_per_unit: 5 }
  - key: remote_address
    value: 10.0.0.1
    rate_limit: { unlimited: true }
  # Nested: per path and address.
  - key: path
    value: /upload
    descriptors:
      - key: remote_address
        rate_limit: { unit: second, requests_per_unit: 2 }
  # A wildcard value.
  - key: client
    value: batch-*
    rate_limit: { unit: hour, requests_per_unit: 2 }
  # Shadow mode: counted, never denies.
  - key: trial
    rate_limit: { unit: minute, requests_per_unit: 1 }
    shadow_mode: true
  # replaces: a specific limit named "premium" overrides the general one.
  - key: tier
    value: general
    rate_limit: { name: general, unit: minute, requests_per_unit: 1 }
  - key: tier
    value: premium
    rate_limit: { unit: minute, requests_per_unit: 100, replaces: [{ name: general }] }
`;
const OTHER = `
domain: other
descriptors:
  - key: k
    rate_limit: { unit: day, requests_per_unit: 1 }
`;




describe.each(['memory', 'redis'] as const)('rate-limit service (%s store)', (storeKind) => {
  let t: TestApp | undefined;
  let client: RlsClient | undefined;
  afterEach(async () => {
    client?.close();
    await t?.close();
    t = undefined;
  });
  const clock = manualClock(Date.UTC(2026, 10, 23, 10, 0, 0));

  async function start(options: { rules?: Record<string, string>; configYaml?: string; store?: { kind: 'redis'; url: string } } = {}) {
    if (storeKind === 'redis') await redisFile.server.client().flushall();
    clock.set(Date.UTC(2026, 10, 23, 10, 0, 0));
    const dir = rulesDir(options.rules ?? { 'edge.yaml': RULES, 'other.yaml': OTHER });
    t = await startTestApp({
      configYaml: options.configYaml ?? 'models: { m: {} }\n',
      store: options.store ?? (storeKind === 'memory' ? { kind: 'memory' } : { kind: 'redis', url: redisFile.server.url }),
      clock,
      rateLimitConfigDir: dir,
    });
    client = rlsClient(t.app.grpcPort);
    return dir;
  }

  const ask = (domain: string, descriptors: Descriptor[], hitsAddend = 0) => askRls(client!, domain, descriptors, hitsAddend);
  const one = async (domain: string, entries: Entry[], hits?: number) => (await ask(domain, [{ entries, ...(hits === undefined ? {} : { hits }) }])).statuses[0]!;

  it('denies at exactly requests_per_unit + 1, with the limit, the remainder and the reset in each answer', async () => {
    await start();
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await ask('edge', [{ entries: [['remote_address', '10.0.0.7']] }]));
    expect(answers.map((a) => a.overall_code)).toEqual(['OK', 'OK', 'OK', 'OVER_LIMIT']);
    expect(answers.map((a) => a.statuses[0]!.limit_remaining)).toEqual([2, 1, 0, 0]);
    expect(answers[0]!.statuses[0]!.current_limit).toEqual({ requests_per_unit: 3, unit: 'MINUTE', name: '' });
    expect(answers[0]!.statuses[0]!.duration_until_reset).toEqual({ seconds: '60' });
    // Another address has its own counter under the default rule; the next minute starts afresh.
    expect((await one('edge', [['remote_address', '10.0.0.8']])).code).toBe('OK');
    clock.advance(60_000);
    expect((await one('edge', [['remote_address', '10.0.0.7']])).code).toBe('OK');
  });

  it('prefers an exact value over the default, never counts an unlimited value, and matches nested and wildcard rules', async () => {
    await start();
    for (let i = 0; i < 5; i++) expect((await one('edge', [['remote_address', '10.0.0.9']])).code).toBe('OK');
    expect((await one('edge', [['remote_address', '10.0.0.9']])).code).toBe('OVER_LIMIT');
    for (let i = 0; i < 10; i++) expect(await one('edge', [['remote_address', '10.0.0.1']])).toEqual({ code: 'OK', limit_remaining: 4_294_967_295 });
    if (storeKind === 'redis') expect(await redisFile.server.client().keys('*MTAuMC4wLjE*')).toEqual([]);
    const upload: Entry[] = [['path', '/upload'], ['remote_address', '10.0.0.7']];
    expect([(await one('edge', upload)).code, (await one('edge', upload)).code, (await one('edge', upload)).code]).toEqual(['OK', 'OK', 'OVER_LIMIT']);
    expect((await one('edge', [['path', '/other'], ['remote_address', '10.0.0.7']])).code).toBe('OK');
    const batch = [(await one('edge', [['client', 'batch-a']])).code, (await one('edge', [['client', 'batch-a']])).code, (await one('edge', [['client', 'batch-a']])).code];
    expect(batch).toEqual(['OK', 'OK', 'OVER_LIMIT']);
    expect(await one('edge', [['client', 'interactive']])).toEqual({ code: 'OK', limit_remaining: 0 });
    // An unknown domain has no rules: allowed, uncounted.
    expect((await ask('nowhere', [{ entries: [['remote_address', '10.0.0.7']] }])).overall_code).toBe('OK');
  });

  it('shadow_mode never denies but counts, and reports it in the rule metrics', async () => {
    await start();
    const statuses = [await one('edge', [['trial', 'x']]), await one('edge', [['trial', 'x']]), await one('edge', [['trial', 'x']])];
    expect(statuses.map((s) => s.code)).toEqual(['OK', 'OK', 'OK']);
    expect(statuses.map((s) => s.limit_remaining)).toEqual([0, 0, 0]);
    const metrics = await (await fetch(`${t!.http}/metrics`)).text();
    expect(metrics).toMatch(/tokenwarden_ratelimit_hits_total\{rule="edge.trial",stat="shadow_mode"\} 2/);
    expect(metrics).toMatch(/tokenwarden_ratelimit_hits_total\{rule="edge.trial",stat="total_hits"\} 3/);
  });

  it('a rule that replaces another by name drops it for that request', async () => {
    await start();
    const general: Descriptor = { entries: [['tier', 'general']] };
    const premium: Descriptor = { entries: [['tier', 'premium']] };
    for (let i = 0; i < 3; i++) expect((await ask('edge', [general, premium])).overall_code).toBe('OK');
    expect((await ask('edge', [general])).overall_code).toBe('OK');
    expect((await ask('edge', [general])).overall_code).toBe('OVER_LIMIT');
  });

  it('adds hits_addend: request-level (0 means 1), per descriptor (read from the wire; 0 checks only), and several descriptors at once', async () => {
    await start();
    expect((await ask('edge', [{ entries: [['remote_address', '10.0.0.20']] }], 2)).statuses[0]!.limit_remaining).toBe(1);
    expect((await ask('edge', [{ entries: [['remote_address', '10.0.0.21'] as Entry], hits: 3 }], 1)).statuses[0]!.limit_remaining).toBe(0);
    expect((await ask('edge', [{ entries: [['remote_address', '10.0.0.21'] as Entry], hits: 0 }])).statuses[0]).toMatchObject({ code: 'OK', limit_remaining: 0 });
    expect((await ask('edge', [{ entries: [['remote_address', '10.0.0.22'] as Entry], hits: 4 }])).statuses[0]!.code).toBe('OVER_LIMIT');
    // Denied hits count, as envoyproxy/ratelimit's do: the 4 above used the window up.
    expect((await ask('edge', [{ entries: [['remote_address', '10.0.0.22'] as Entry], hits: 0 }])).statuses[0]!.code).toBe('OVER_LIMIT');
    // A descriptor hits_addend beyond 2^53 is over any limit and counts nothing.
    expect((await ask('edge', [{ entries: [['remote_address', '10.0.0.23'] as Entry], hits: 2 ** 60 }])).overall_code).toBe('OVER_LIMIT');
    expect((await ask('edge', [{ entries: [['remote_address', '10.0.0.23']] }])).statuses[0]!.limit_remaining).toBe(2);
    const several = await ask('edge', [{ entries: [['remote_address', '10.0.0.24']] }, { entries: [['client', 'batch-z']], hits: 5 }, { entries: [['nothing', 'x']] }]);
    expect(several.overall_code).toBe('OVER_LIMIT');
    expect(several.statuses.map((s) => s.code)).toEqual(['OK', 'OVER_LIMIT', 'OK']);
  });

  it("uses a descriptor's limit override, and ignores one with an unknown unit", async () => {
    await start();
    const overridden: Descriptor = { entries: [['remote_address', '10.0.0.30']], limit: { requests_per_unit: 1, unit: 3 } };
    expect((await ask('edge', [overridden])).statuses[0]!.current_limit).toEqual({ requests_per_unit: 1, unit: 'HOUR', name: '' });
    expect((await ask('edge', [overridden])).overall_code).toBe('OVER_LIMIT');
    const unknownUnit: Descriptor = { entries: [['remote_address', '10.0.0.31']], limit: { requests_per_unit: 1, unit: 99 } };
    expect((await ask('edge', [unknownUnit])).statuses[0]!.current_limit).toMatchObject({ requests_per_unit: 3, unit: 'MINUTE' });
  });

  it("charges a token descriptor to the user's token quotas, hits as tokens, counted even past the limit", async () => {
    await start({
      configYaml: 'models: { m: {} }\nusers: { alice: { limits: { tokensPerMinute: 100 } } }\nrateLimitService: { tokenDescriptors: { domain: tokens } }\n',
    });
    const tokens = (n: number) => ask('tokens', [{ entries: [['user', 'alice'], ['model', 'm']], hits: n }]);
    const used = async () => {
      const usage = (await (await fetch(`${t!.http}/v1/usage/alice?model=m`, { headers: ADMIN })).json()) as any;
      return usage.models[0].windows.find((w: { window: string }) => w.window === 'tokensPerMinute').used as number;
    };
    const first = await tokens(60);
    expect(first.statuses[0]).toMatchObject({ code: 'OK', limit_remaining: 40, current_limit: { requests_per_unit: 100, unit: 'MINUTE', name: 'tokensPerMinute' } });
    // Tokens reported after the fact (hits_addend at stream end) are charged even when they overshoot.
    const over = await tokens(41);
    expect(over.overall_code).toBe('OVER_LIMIT');
    expect(over.statuses[0]!.current_limit!.name).toBe('tokensPerMinute');
    expect(await used()).toBe(101);
    // 0 only looks: over limit now, and nothing more is charged.
    expect((await tokens(0)).overall_code).toBe('OVER_LIMIT');
    expect(await used()).toBe(101);
    clock.advance(70_000);
    expect((await tokens(0)).statuses[0]).toMatchObject({ code: 'OK', limit_remaining: 100 });
    // A model tokenwarden does not serve is over limit (ext_authz refuses it too); a descriptor without a user is not a token descriptor.
    expect((await ask('tokens', [{ entries: [['user', 'alice'], ['model', 'unknown']], hits: 1 }])).overall_code).toBe('OVER_LIMIT');
    expect((await ask('tokens', [{ entries: [['model', 'm']], hits: 1000 }])).overall_code).toBe('OK');
  });

  it('adds the x-ratelimit headers Envoy writes, when configured', async () => {
    await start({ configYaml: 'models: { m: {} }\nrateLimitService: { responseHeaders: true }\n' });
    const answer = await ask('edge', [{ entries: [['remote_address', '10.0.0.40']] }, { entries: [['client', 'batch-q']] }]);
    expect(Object.fromEntries(answer.response_headers_to_add.map((h) => [h.key, h.value]))).toEqual({
      'x-ratelimit-limit': '2, 3;w=60, 2;w=3600',
      'x-ratelimit-remaining': '1',
      'x-ratelimit-reset': '3600',
    });
  });

  it('reloads the rule files when they change, and keeps the last good rules when a file is invalid', async () => {
    const dir = await start();
    writeFileSync(join(dir, 'other.yaml'), OTHER.replace('requests_per_unit: 1', 'requests_per_unit: 2'));
    await expect.poll(async () => (await one('other', [['k', 'a']])).current_limit?.requests_per_unit, { timeout: 15_000, interval: 100 }).toBe(2);
    writeFileSync(join(dir, 'broken.yaml'), 'domain: broken\ndescriptors:\n  - key: x\n    rate_limit: { unit: fortnight, requests_per_unit: 1 }\n');
    await expect.poll(async () => (await (await fetch(`${t!.http}/metrics`)).text()).match(/^tokenwarden_ratelimit_config_invalid (\d)$/m)?.[1], { timeout: 15_000, interval: 100 }).toBe('1');
    expect((await one('other', [['k', 'b']])).current_limit?.requests_per_unit).toBe(2);
    rmSync(join(dir, 'broken.yaml'));
    await expect.poll(async () => (await (await fetch(`${t!.http}/metrics`)).text()).match(/^tokenwarden_ratelimit_config_invalid (\d)$/m)?.[1], { timeout: 15_000, interval: 100 }).toBe('0');
  });

  it('fails the call for a request Envoy never sends (no domain, no descriptors)', async () => {
    await start();
    await expect(ask('', [{ entries: [['a', 'b']] }])).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    await expect(ask('edge', [])).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
  });
});

describe('rate-limit service when Redis is down', () => {
  it('answers over limit by default, and fails the call (Envoy decides) only with failOpen: true', async () => {
    for (const failOpen of [false, true]) {
      const redis = await startRedisServer();
      const t = await startTestApp({
        configYaml: `models: { m: {} }\nfailOpen: ${failOpen}\n`,
        store: { kind: 'redis', url: redis.url },
        rateLimitConfigDir: rulesDir({ 'edge.yaml': RULES }),
      });
      const client = rlsClient(t.app.grpcPort);
      await redis.stop();
      const request = { domain: 'edge', descriptors: [{ entries: [{ key: 'remote_address', value: '10.0.0.7' }] }, { entries: [{ key: 'trial', value: 't' }] }] };
      const outcome = await new Promise<{ err: grpc.ServiceError | null; answer?: Answer }>((resolve) => client.ShouldRateLimit(request, (err, answer) => resolve({ err, ...(answer ? { answer } : {}) })));
      if (failOpen) expect(outcome.err?.code).toBe(grpc.status.UNAVAILABLE);
      else expect(outcome.answer).toMatchObject({ overall_code: 'OVER_LIMIT', statuses: [{ code: 'OVER_LIMIT' }, { code: 'OK' }] });
      client.close();
      await t.close();
    }
  });
});

describe('the wire', () => {
  it("a descriptor's hits_addend (field 3) is invisible to the Envoy protos in @grpc/grpc-js-xds, and read by ours", () => {
    const envoy = protoLoader.loadSync('envoy/service/ratelimit/v3/rls.proto', PROTO_LOADER_OPTIONS);
    const envoyRequest = (envoy['envoy.service.ratelimit.v3.RateLimitService'] as grpc.ServiceDefinition)['ShouldRateLimit']!;
    const ours = rateLimitServiceDefinition()['ShouldRateLimit']!;
    const bytes = ours.requestSerialize({ domain: 'd', descriptors: [{ entries: [{ key: 'k', value: 'v' }], hits_addend: { value: '7' } }] });
    expect(envoyRequest.requestDeserialize(bytes)).toMatchObject({ descriptors: [{ entries: [{ key: 'k', value: 'v' }] }] });
    expect((envoyRequest.requestDeserialize(bytes) as { descriptors: Array<Record<string, unknown>> }).descriptors[0]!['hits_addend']).toBeUndefined();
    expect(ours.requestDeserialize(bytes)).toMatchObject({ descriptors: [{ hits_addend: { value: '7' } }] });
    expect(ours.path).toBe('/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit');
    expect(ENVOY_PROTO_DIRS.length).toBeGreaterThan(0);
  });
});
