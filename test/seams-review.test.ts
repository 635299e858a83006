import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { parseLimitsYaml } from '../src/config/load.js';
import { identify } from '../src/identity/identify.js';
import { RedisStore } from '../src/quota/redis-store.js';
import type { CounterCharge } from '../src/quota/store.js';
import { AccessLogStandIn } from './helpers/access-log-stand-in.js';
import { ADMIN, manualClock, startTestApp, type TestApp } from './helpers/app.js';
import { redisForThisFile } from './helpers/redis-server.js';
import { runUsageLua } from './helpers/usage-lua.js';

/* An adversarial review's findings, kept as regression tests: each states the contract and failed before its fix. */

const sha = (text: string) => createHash('sha256').update(text).digest('hex');
const redisFile = redisForThisFile();

const BASE = `
models:
  small: { maxModelLen: 2048 }
apiKeys:
  - { sha256: "${sha('key-alice')}", user: alice }
identity: { trustUserHeader: true }
`;

async function windows(t: TestApp, user: string, model: string): Promise<Record<string, { used: number; limit: number | null }>> {
  const res = await fetch(`${t.http}/v1/usage/${encodeURIComponent(user)}?model=${model}`, { headers: ADMIN });
  const body = (await res.json()) as { models: Array<{ windows: Array<{ window: string; used: number; limit: number | null }> }> };
  return Object.fromEntries(body.models[0]!.windows.map((w) => [w.window, { used: w.used, limit: w.limit }]));
}

let t: TestApp | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

describe('seams review: ready means able to answer', () => {
  // First in the file: tokenizers are cached per process, and this needs a cold one.
  it('R8-0 when /readyz says ready, a Check is answered within Envoy\'s 1 s ext_authz timeout (cold start)', async () => {
    t = await startTestApp({ configYaml: BASE, store: { kind: 'memory' }, waitForTokenizers: false });
    const deadline = Date.now() + 20_000;
    while ((await fetch(`${t.http}/readyz`)).status !== 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const ready = await fetch(`${t.http}/readyz`);
    expect(ready.status).toBe(200);
    const started = Date.now();
    const outcome = await t.envoy
      .check({ headers: { 'x-user-id': 'u0' }, body: { model: 'small', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 10 }, timeoutMs: 1000 })
      .then(
        (res) => `CheckResponse ${res.status}`,
        (err: { code?: number }) => `RPC error ${err.code}`,
      );
    expect({ outcome, ms: Date.now() - started < 1000 }).toEqual({ outcome: 'CheckResponse 200', ms: true });
  });
});

describe('seams review: reservation = what vLLM can generate', () => {
  it('R8-1 /v1/completions with an explicit "max_tokens": null reserves the remaining context (vLLM versions differ: the larger)', async () => {
    t = await startTestApp({ configYaml: BASE, store: { kind: 'memory' } });
    const res = await t.envoy.check({ path: '/v1/completions', headers: { 'x-user-id': 'u1' }, body: { model: 'small', prompt: 'Hello', max_tokens: null } });
    expect(res.status).toBe(200);
    // Older vLLM: null is None, and get_max_tokens() takes max_model_len - prompt; newer: 16.
    expect(res.metadata['reserved_tokens']).toBe(2048);
  });

  it('R8-2 /v1/completions with a list of prompts reserves the completion budget once per prompt', async () => {
    const config = BASE + `users:\n  u2: { limits: { tokensPerMinute: 3000 } }\n`;
    t = await startTestApp({ configYaml: config, store: { kind: 'memory' } });
    // 500 prompts of one token each (as token ids), 1000 completion tokens each: vLLM schedules
    // 500 sequences and may generate 500 x 1000 = 500,000 tokens.
    const prompts = Array.from({ length: 500 }, () => [9906]);
    const res = await t.envoy.check({ path: '/v1/completions', headers: { 'x-user-id': 'u2' }, body: { model: 'small', prompt: prompts, max_tokens: 1000 } });
    // A 3000 tokens-per-minute user must not be admitted for a request that can cost 500,500 tokens.
    expect({ status: res.status, reserved: res.metadata['reserved_tokens'] }).toEqual({ status: 429, reserved: undefined });
  });

  it('R8-3 a list of prompts that each fit the context is not refused because their sum exceeds maxModelLen', async () => {
    t = await startTestApp({ configYaml: BASE, store: { kind: 'memory' } });
    // Each prompt is 1500 tokens + 100 completion <= 2048 (vLLM accepts); the sum is 3000.
    const prompts = [Array.from({ length: 1500 }, () => 9906), Array.from({ length: 1500 }, () => 9906)];
    const res = await t.envoy.check({ path: '/v1/completions', headers: { 'x-user-id': 'u3' }, body: { model: 'small', prompt: prompts, max_tokens: 100 } });
    expect(res.status).toBe(200);
  });
});

describe('seams review: endpoints other than chat/completions', () => {
  it('R8-4 POST /v1/responses (vLLM >= 0.10) with decoy messages/max_tokens is not admitted for a tiny reservation and settled as that', async () => {
    const config = BASE + `users:\n  u4: { limits: { tokensPerMinute: 3000 } }\n`;
    t = await startTestApp({ configYaml: config, store: { kind: 'memory' } });
    // vLLM's ResponsesRequest reads `input` and `max_output_tokens` and ignores unknown fields;
    // tokenwarden reads `messages` and `max_tokens` (decoys) and counts only them.
    const body = {
      model: 'small',
      input: 'Write the longest essay you can about quotas.',
      max_output_tokens: 2000,
      messages: [{ role: 'user', content: 'x' }],
      max_tokens: 1,
    };
    const res = await t.envoy.check({ path: '/v1/responses', headers: { 'x-user-id': 'u4' }, body });
    // vLLM's Responses usage is {input_tokens, output_tokens}: usage.lua records nothing for it.
    const responsesBody = JSON.stringify({
      id: 'resp_1',
      object: 'response',
      status: 'completed',
      output: [{ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: '...2000 tokens...' }] }],
      usage: { input_tokens: 30, input_tokens_details: { cached_tokens: 0 }, output_tokens: 2000, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 2030 },
    });
    expect(runUsageLua([[responsesBody]])[0]).toBeUndefined();
    if (res.status === 200) {
      const log = new AccessLogStandIn(t.app.grpcPort);
      log.send([{ requestId: res.requestId, responseCode: 200, authzMetadata: res.metadata }]);
      await log.end();
      log.close();
      await new Promise((r) => setTimeout(r, 100));
    }
    const w = await windows(t, 'u4', 'small');
    // Either refused, or charged at least what vLLM could generate for it (2048 with maxModelLen 2048).
    expect(res.status === 200 ? w['tokensPerMinute']!.used : 2048).toBeGreaterThanOrEqual(2048);
  });
});

describe('seams review: resets and epochs', () => {
  it('R8-5 (memory) a reset after a lease-shortening reload: a late settlement subtracts charges made after the reset', async () => {
    const clock = manualClock(Date.UTC(2026, 10, 23, 10, 0, 0));
    const cfg = (lease: number) => BASE + `defaults: { tokensPerDay: 100000 }\nreservation: { concurrencyLeaseSeconds: ${lease} }\n`;
    t = await startTestApp({ configYaml: cfg(600), store: { kind: 'memory' }, clock });
    const check = (maxTokens: number) =>
      t!.envoy.check({ headers: { 'x-user-id': 'u5' }, body: { model: 'small', messages: [{ role: 'user', content: 'Hi' }], max_tokens: maxTokens } });
    const before = await check(1000); // reserved ~1035 before the reset, lives 660 s
    expect(before.status).toBe(200);
    // The operator shortens the lease (stuck slots), then resets the user.
    t.app.setConfig(parseLimitsYaml(cfg(10) + `admin: { tokenSha256: "${sha('test-admin-token')}" }\n`, 'reload'));
    clock.advance(1000);
    expect((await fetch(`${t.http}/v1/usage/u5`, { method: 'DELETE', headers: ADMIN })).status).toBe(204);
    clock.advance(1000);
    const after = await check(500); // charged after the reset
    expect(after.status).toBe(200);
    const afterReserved = after.metadata['reserved_tokens'] as number;
    clock.advance(80_000); // the epoch (10 s + 60 s) is gone; the first reservation (660 s) is not
    const log = new AccessLogStandIn(t.app.grpcPort);
    log.send([{ requestId: before.requestId, responseCode: 200, authzMetadata: before.metadata, usage: { promptTokens: 35, completionTokens: 5 } }]);
    await log.end();
    log.close();
    await new Promise((r) => setTimeout(r, 100));
    expect((await windows(t, 'u5', 'small'))['tokensPerDay']!.used).toBe(afterReserved);
  });

  it('R8-6 (redis) the same at the store: reset with a shorter TTL than a live reservation, then a late settlement', async () => {
    const store = new RedisStore(redisFile.server.url);
    await store.connect();
    try {
      const scope = { user: 'u6', model: 'small' };
      const now = Date.now();
      const day: CounterCharge = { name: 'tokensPerDay', limit: null, cost: 1000, countsTokens: true, bucket: 7, oldestCounted: 7, ttlMs: 3_600_000 };
      const reserve = (id: string, cost: number, ttlMs: number) =>
        store.reserve({
          scope,
          counters: [{ ...day, cost }],
          lease: { limit: null, nowMs: Date.now(), expiresAtMs: Date.now() + ttlMs, ttlMs },
          reservation: { id, attempt: id + '-a', promptTokens: 10, reservedTokens: cost, nowMs: Date.now(), expiresAtMs: Date.now() + ttlMs, ttlMs },
        });
      expect((await reserve('old', 1000, 660_000)).admitted).toBe(true);
      await store.reset(scope); // then a reload made new reservations live 150 ms
      expect((await reserve('new', 500, 150)).admitted).toBe(true);
      await new Promise((r) => setTimeout(r, 400)); // "new" has expired; "old" lives on
      const [outcome] = await store.settle([{ scope, reservationId: 'old', charge: { kind: 'actual', tokens: 10 }, nowMs: now + 400, tombstoneTtlMs: 660_000 }]);
      expect(outcome).toMatchObject({ status: 'settled', afterReset: true });
      const [buckets] = await store.readCounters([{ scope, name: 'tokensPerDay', oldestCounted: 7 }]);
      expect(buckets).toEqual([[7, 500]]);
    } finally {
      await store.close();
    }
  });
});

describe('seams review: a Check that cannot decide in time', () => {
  it('R8-8 a model whose hub tokenizer is still downloading answers 503 tokenizer_unavailable before Envoy gives up (not an RPC failure)', async () => {
    const { createServer } = await import('node:http');
    const { mkdtemp } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    // A hub that accepts the connection and never answers (a black-holed proxy, a stalled CDN).
    const hub = createServer(() => {});
    await new Promise<void>((r) => hub.listen(0, '127.0.0.1', () => r()));
    const saved = { endpoint: process.env['HF_ENDPOINT'], cache: process.env['TOKENWARDEN_CACHE_DIR'] };
    process.env['HF_ENDPOINT'] = `http://127.0.0.1:${(hub.address() as { port: number }).port}`;
    process.env['TOKENWARDEN_CACHE_DIR'] = await mkdtemp(join(tmpdir(), 'tw-r8-'));
    try {
      t = await startTestApp({
        configYaml: `models:\n  hubbed: { tokenizer: { hub: meta-llama/Llama-3.2-1B-Instruct }, maxModelLen: 2048 }\nidentity: { trustUserHeader: true }\n`,
        store: { kind: 'memory' },
        waitForTokenizers: false,
      });
      expect((await fetch(`${t.http}/readyz`)).status).toBe(503);
      // failOpen is false (the default): every answer must be a CheckResponse. Envoy's ext_authz timeout is 1 s.
      const outcome = await t.envoy
        .check({ headers: { 'x-user-id': 'u8' }, body: { model: 'hubbed', messages: [{ role: 'user', content: 'Hi' }] }, timeoutMs: 1000 })
        .then(
          (res) => `CheckResponse ${res.status}`,
          (err: { code?: number; details?: string }) => `RPC error ${err.code} ${err.details}`,
        );
      expect(outcome).toBe('CheckResponse 503');
    } finally {
      process.env['HF_ENDPOINT'] = saved.endpoint;
      process.env['TOKENWARDEN_CACHE_DIR'] = saved.cache;
      if (saved.endpoint === undefined) delete process.env['HF_ENDPOINT'];
      if (saved.cache === undefined) delete process.env['TOKENWARDEN_CACHE_DIR'];
      hub.closeAllConnections();
      hub.close();
    }
  });
});

describe('seams review: time zone and stores', () => {
  it('R8-9 a zone change that moves the local date forward does not forget usage already made in the new local day', async () => {
    // 2026-11-23 19:00 UTC is 2026-11-24 04:00 in Seoul: Seoul's day began at 15:00 UTC.
    const clock = manualClock(Date.UTC(2026, 10, 23, 19, 0, 0));
    const cfg = (zone: string) => BASE + `defaults: { tokensPerDay: 1000 }\ndailyReset: { timeZone: ${zone} }\nadmin: { tokenSha256: "${sha('test-admin-token')}" }\n`;
    t = await startTestApp({ configYaml: cfg('UTC'), store: { kind: 'memory' }, clock });
    const ask = () => t!.envoy.check({ headers: { 'x-user-id': 'u10' }, body: { model: 'small', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 600 } });
    expect((await ask()).status).toBe(200); // ~635 tokens at 04:00 Seoul time, 24 Nov
    clock.advance(3_600_000); // 20:00 UTC = 05:00 Seoul
    t.app.setConfig(parseLimitsYaml(cfg('Asia/Seoul'), 'reload'));
    // Seoul's 24 Nov already holds ~635 tokens: another ~635 exceeds its 1000.
    expect((await ask()).status).toBe(429);
  });

  it('R8-10 a user id or group with a lone surrogate is refused (Redis keys, in UTF-8, would merge it with U+FFFD)', async () => {
    // protobufjs decodes header bytes ED A0 80 into a lone U+D800; the Check client cannot send such bytes, so ask identify directly.
    const config = parseLimitsYaml(BASE, 'identity');
    const identity = (user: string, groups: unknown = []) =>
      identify({ headers: new Map([['x-user-id', user]]), filterMetadata: { 'envoy.filters.http.jwt_authn': { jwt_payload: { sub: user, groups } } } }, config);
    expect(identity('a\uD800')).toEqual({ error: "The header 'x-user-id' is not an acceptable user id." });
    expect(identity('a\uFFFD')).toMatchObject({ user: 'a\uFFFD' });
    const jwtConfig = parseLimitsYaml(BASE.replace('identity: { trustUserHeader: true }', 'identity: { jwt: {} }'), 'jwt identity');
    const viaJwt = identify({ headers: new Map(), filterMetadata: { 'envoy.filters.http.jwt_authn': { jwt_payload: { sub: 'ann', groups: ['ok', 'bad\uDC00'] } } } }, jwtConfig);
    expect(viaJwt).toMatchObject({ user: 'ann', groups: ['ok'] });
  });
});

describe('seams review: usage is private, through Envoy too', () => {
  it('R8-11 GET /v1/usage/../../metrics (forwarded by envoy.yaml\'s /v1/usage route as is) does not serve per-user metrics without a token', async () => {
    const { request } = await import('node:http');
    const { readFileSync } = await import('node:fs');
    const { parse } = await import('yaml');
    // envoy.yaml normalizes paths before routing, and tokenwarden refuses a path not in normal form.
    const envoy = readFileSync(new URL('../envoy/envoy.yaml', import.meta.url), 'utf8');
    const hcm = parse(envoy).static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
    expect(hcm.normalize_path).toBe(true);
    expect(hcm.route_config.virtual_hosts[0].routes[0].match.path_separated_prefix).toBe('/v1/usage');

    t = await startTestApp({ configYaml: BASE + `metrics: { userLabel: true }\n`, store: { kind: 'memory' } });
    const res = await t.envoy.check({ headers: { authorization: 'Bearer key-alice' }, body: { model: 'small', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 10 } });
    const log = new AccessLogStandIn(t.app.grpcPort);
    log.send([{ requestId: res.requestId, responseCode: 200, authzMetadata: res.metadata, usage: { promptTokens: 36, completionTokens: 7 } }]);
    await log.end();
    log.close();
    await new Promise((r) => setTimeout(r, 100));
    const port = Number(new URL(t.http).port);
    // What a client sends to Envoy with `curl --path-as-is http://envoy:10000/v1/usage/../../metrics`.
    const leaked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method: 'GET', path: '/v1/usage/../../metrics' }, (r) => {
        let body = '';
        r.on('data', (c: Buffer) => (body += c.toString()));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
    expect({ status: leaked.status, alice: leaked.body.includes('user="alice"') }).toEqual({ status: 400, alice: false });
  });
});
