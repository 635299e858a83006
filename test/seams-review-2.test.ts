import { createHash } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { parseLimitsYaml } from '../src/config/load.js';
import { ADMIN, manualClock, startTestApp, type TestApp } from './helpers/app.js';
import { redisForThisFile } from './helpers/redis-server.js';

/*
 * Hostile review of f12a2ed, faaca37 and 45603c3. Each test states the contract it expects; each
 * failed against the commits reviewed.
 */

const sha = (text: string) => createHash('sha256').update(text).digest('hex');
const ADMIN_SHA = sha('test-admin-token');
const redisFile = redisForThisFile();

/** As the test helper does: the admin token in every config handed to setConfig. */
const snapshot = (yaml: string) => parseLimitsYaml(`${yaml}\nadmin: { tokenSha256: "${ADMIN_SHA}" }\n`, 'review-2');

/** A completions request reserving exactly `tokens` (3 prompt token ids + the rest as max_tokens). */
const completion = (tokens: number) => ({ model: 'small', prompt: [9906, 9906, 9906], max_tokens: tokens - 3 });

const outcomeOf = (p: Promise<{ status: number }>) =>
  p.then(
    (res) => `CheckResponse ${res.status}`,
    (err: { code?: number }) => `RPC error ${err.code}`,
  );

let t: TestApp | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

describe('seams review 2: the worker is part of "able to answer"', () => {
  // Every app has its own piscina pool, whose threads start cold.
  it('W1 once /readyz is 200, a large prompt (worker path) is answered within envoy.yaml\'s 1 s ext_authz timeout', async () => {
    t = await startTestApp({ configYaml: 'models:\n  small: {}\nidentity: { trustUserHeader: true }\ntokenization: { workers: 1 }\n', store: { kind: 'memory' }, waitForTokenizers: false });
    const deadline = Date.now() + 20_000;
    while ((await fetch(`${t.http}/readyz`)).status !== 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect((await fetch(`${t.http}/readyz`)).status).toBe(200);
    // 25 KB of text: above workerThresholdBytes (16 KiB), so it is rendered and counted on the worker.
    const body = { model: 'small', messages: [{ role: 'user', content: 'word '.repeat(5000) }], max_tokens: 10 };
    const outcome = await outcomeOf(t.envoy.check({ headers: { 'x-user-id': 'w1' }, body, timeoutMs: 1000 }));
    // Observed: RPC error 4 (DEADLINE_EXCEEDED) after ~1.6 s: the worker thread parses tokenizer.json on
    // its first task (and again after every 60 s idle: minThreads 0, idleTimeout 60 s). Envoy answers
    // 503 (status_on_error) — or, with failure_mode_allow: true, forwards the request uncharged.
    expect(outcome).toBe('CheckResponse 200');
  });

  it('W2 a key already over its requestsPerMinute cannot hold up other users\' large prompts past the ext_authz timeout', async () => {
    const configYaml = 'models:\n  small: {}\nusers:\n  mallory: { limits: { requestsPerMinute: 1 } }\nidentity: { trustUserHeader: true }\ntokenization: { workers: 1 }\n';
    t = await startTestApp({ configYaml, store: { kind: 'memory' } });
    const app = t;
    // Warm the worker (W1 is a separate defect) and use mallory's one request of the minute.
    await app.envoy.check({ path: '/v1/completions', headers: { 'x-user-id': 'mallory' }, body: { model: 'small', prompt: 'x '.repeat(10_000), max_tokens: 1 }, timeoutMs: 10_000 });
    // Mallory's Checks are all denied (429) — but only after their 1 MB prompts are counted on the worker.
    const attack = Array.from({ length: 6 }, (_, i) =>
      outcomeOf(app.envoy.check({ path: '/v1/completions', headers: { 'x-user-id': 'mallory' }, body: { model: 'small', prompt: '!'.repeat(1_000_000 - i), max_tokens: 1 }, timeoutMs: 10_000 })),
    );
    await new Promise((r) => setTimeout(r, 50));
    const victim = await outcomeOf(
      app.envoy.check({ headers: { 'x-user-id': 'victim' }, body: { model: 'small', messages: [{ role: 'user', content: 'word '.repeat(5000) }], max_tokens: 10 }, timeoutMs: 1000 }),
    );
    expect(await Promise.all(attack)).toEqual(Array(6).fill('CheckResponse 429'));
    // Observed: RPC error 4 — the victim waits in the one worker's queue behind ~1.8 s of mallory's
    // refused requests: Envoy answers 503, or with failure_mode_allow forwards the victim uncharged.
    expect(victim).toBe('CheckResponse 200');
  });
});

describe('seams review 2: readiness and config reloads', () => {
  it('R1 adding a model whose tokenizer is still downloading does not make a serving pod unready', async () => {
    // A hub that accepts connections and never answers (a black-holed egress, a slow mirror).
    const sockets = new Set<Socket>();
    const hub: Server = createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
    });
    await new Promise<void>((resolve) => hub.listen(0, '127.0.0.1', resolve));
    const previous = process.env['HF_ENDPOINT'];
    process.env['HF_ENDPOINT'] = `http://127.0.0.1:${(hub.address() as { port: number }).port}`;
    try {
      const base = 'models:\n  small: {}\nidentity: { trustUserHeader: true }\n';
      t = await startTestApp({ configYaml: base, store: { kind: 'memory' } });
      expect((await fetch(`${t.http}/readyz`)).status).toBe(200);

      // The operator adds a model to the ConfigMap (every replica gets it at the same moment).
      t.app.setConfig(snapshot('models:\n  small: {}\n  big: { tokenizer: { hub: acme/big-model, revision: main } }\nidentity: { trustUserHeader: true }\n'));
      await new Promise((r) => setTimeout(r, 100));

      // The pod still answers every Check for 'small' exactly as before...
      const res = await t.envoy.check({ headers: { 'x-user-id': 'r1' }, body: { model: 'small', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5 } });
      expect(res.status).toBe(200);
      // ...so it must stay in the Service. Observed: 503 for up to 2 x 30 s (the hub timeout), on every
      // replica at once, and again at each --kube resync (every 60 s) while the download keeps failing:
      // the Service has no endpoints and Envoy fails every request of every model (status_on_error).
      expect((await fetch(`${t.http}/readyz`)).status).toBe(200);
    } finally {
      for (const s of sockets) s.destroy();
      hub.close();
      if (previous === undefined) delete process.env['HF_ENDPOINT'];
      else process.env['HF_ENDPOINT'] = previous;
    }
  });
});

describe('seams review 2: the quarter-hour day', () => {
  it('D1 a zone change to a later-ending zone keeps the day\'s earlier charges (the counter must not expire at the old zone\'s midnight)', async () => {
    const clock = manualClock(Date.parse('2026-11-23T23:00:00Z'));
    const yaml = (zone: string) => `models:\n  small: {}\nusers:\n  d1: { limits: { tokensPerDay: 1000 } }\nidentity: { trustUserHeader: true }\ndailyReset: { timeZone: ${zone} }\n`;
    t = await startTestApp({ configYaml: yaml('UTC'), store: { kind: 'memory' }, clock });
    const first = await t.envoy.check({ path: '/v1/completions', headers: { 'x-user-id': 'd1' }, body: completion(600) });
    expect(first.status).toBe(200);

    // 23:30 UTC: the operator moves the day to Los Angeles (15:30 PST, Nov 23; the LA day began 08:00 UTC).
    clock.set(Date.parse('2026-11-23T23:30:00Z'));
    t.app.setConfig(snapshot(yaml('America/Los_Angeles')));
    await t.app.tokenizers.settled();

    // 00:02 UTC = 16:02 PST, still Nov 23 in LA: the 600 charged at 23:00 UTC count; 600 more exceed 1000.
    clock.set(Date.parse('2026-11-24T00:02:00Z'));
    const second = await t.envoy.check({ path: '/v1/completions', headers: { 'x-user-id': 'd1' }, body: completion(600) });
    // Observed 200: the counter's TTL was set at 23:00 to the UTC midnight + 60 s, and it expired.
    expect(second.status).toBe(429);
  });

  for (const store of ['memory', 'redis'] as const) {
    it(`D2 (${store}) America/Santiago, the day before the midnight DST jump: the day's charges are not forgotten`, async () => {
      // Chile springs forward at 24:00 on Sep 5 2026 (00:00 -04 does not exist; Sep 6 starts 01:00 -03 = 04:00 UTC).
      // 03:10 UTC is 23:10 on Sep 5 local time.
      const clock = manualClock(Date.parse('2026-09-06T03:10:00Z'));
      const user = `d2-${store}`;
      const configYaml = `models:\n  small: {}\nusers:\n  ${user}: { limits: { tokensPerDay: 1000 } }\nidentity: { trustUserHeader: true }\ndailyReset: { timeZone: America/Santiago }\n`;
      t = await startTestApp({ configYaml, store: store === 'memory' ? { kind: 'memory' } : { kind: 'redis', url: redisFile.server.url }, clock });
      const first = await t.envoy.check({ path: '/v1/completions', headers: { 'x-user-id': user }, body: completion(600) });
      expect(first.status).toBe(200);
      clock.advance(60_000);
      const second = await t.envoy.check({ path: '/v1/completions', headers: { 'x-user-id': user }, body: completion(600) });
      // Observed 200, and again after that: windows.ts computes Sep 6's midnight as 03:00 UTC (an hour
      // early), so Sep 5 "ends" at 23:00 local, every charge in its last hour gets a negative TTL, and
      // the counter (with the whole day's usage) is deleted on each charge.
      expect(second.status).toBe(429);
    });
  }

  it('D3 (redis) the day\'s usage charged before the upgrade (key suffix tpd) still counts after it (tpdq)', async () => {
    const clock = manualClock(Date.parse('2026-11-23T12:00:00Z'));
    const configYaml = `models:\n  small: {}\nusers:\n  d3: { limits: { tokensPerDay: 1000 } }\nidentity: { trustUserHeader: true }\n`;
    t = await startTestApp({ configYaml, store: { kind: 'redis', url: redisFile.server.url }, clock });
    // What the release before f12a2ed left in Redis this morning: 900 tokens in the day bucket (the date, in minutes).
    const redis = redisFile.server.client();
    const key = `tw:{${Buffer.from('d3').toString('base64url')}.${Buffer.from('small').toString('base64url')}}:tpd`;
    await redis.hset(key, String(Date.UTC(2026, 10, 23) / 60_000), '900');
    await redis.pexpire(key, 12 * 3600_000 + 60_000);
    const res = await t.envoy.check({ path: '/v1/completions', headers: { 'x-user-id': 'd3' }, body: completion(600) });
    // Observed 200: tpdq starts empty, so the upgrade day grants a second full daily quota (and during a
    // rolling upgrade, old and new replicas each enforce the limit on their own counter).
    expect(res.status).toBe(429);
  });
});

describe('seams review 2: per-prompt reservations have no bound', () => {
  it('P1 (redis, failOpen) a client\'s own request never makes a Check fail as an RPC while Redis is up', async () => {
    const clock = manualClock(Date.parse('2026-11-23T12:00:00Z'));
    // A model without maxModelLen and a user without token limits (say, limited by requests and concurrency only).
    const configYaml = `models:\n  nolen: {}\nusers:\n  p1: { limits: { requestsPerMinute: 1000, maxConcurrentRequests: 100 } }\nidentity: { trustUserHeader: true }\nmaxBodyBytes: 8388608\nfailOpen: true\n`;
    t = await startTestApp({ configYaml, store: { kind: 'redis', url: redisFile.server.url }, clock });
    // ~2.8 million empty token-id prompts, n = 128, max_tokens = 2^31 - 1: one request reserves
    // 2.8e6 x 128 x 2147483647 = 7.7e17 tokens (beyond 2^53), charged into every counter.
    const count = Math.floor((8 * 1024 * 1024 - 100) / 3);
    const body = `{"model":"nolen","n":128,"max_tokens":2147483647,"prompt":[${Array(count).fill('[]').join(',')}]}`;
    const outcomes: string[] = [];
    for (let i = 0; i < 14; i++) {
      outcomes.push(await outcomeOf(t.envoy.check({ path: '/v1/completions', headers: { 'x-user-id': 'p1' }, body, timeoutMs: 60_000 })));
    }
    expect(await redisFile.server.client().ping()).toBe('PONG');
    // Observed: after 12 admissions HINCRBY overflows int64 ("increment or decrement would overflow"),
    // the store reports that as unavailable, and the Check fails with UNAVAILABLE (14): with
    // failure_mode_allow Envoy forwards it uncharged, past requestsPerMinute and maxConcurrentRequests.
    expect(outcomes.filter((o) => o.startsWith('RPC error'))).toEqual([]);
  }, 180_000);
});

describe('seams review 2: the whole-prompt count cache', () => {
  it('C1 a cached count equals a fresh count: 0.0 and -0.0 are different prompts (JSON.stringify writes both as 0)', async () => {
    // A template that prints a number a request passes in (any arithmetic or |float shows the sign of zero).
    const configYaml = [
      'models:',
      '  small:',
      '    chatTemplate: "{% for m in messages %}{{ m.content }}{% endfor %}\\n{{ temperature | float }}"',
      'tokenization: { workers: 0 }',
    ].join('\n');
    const body = (zero: string) =>
      `{"model":"small","messages":[{"role":"user","content":"Hello"}],"chat_template_kwargs":{"temperature":${zero}},"max_tokens":5}`;
    const tokenize = async (app: TestApp, text: string) => {
      const res = await fetch(`${app.http}/v1/tokenize`, { method: 'POST', headers: { ...ADMIN, 'content-type': 'application/json' }, body: text });
      expect(res.status).toBe(200);
      return ((await res.json()) as { prompt_tokens: number }).prompt_tokens;
    };

    t = await startTestApp({ configYaml, store: { kind: 'memory' } });
    const freshNegative = await tokenize(t, body('-0.0')); // renders "temperature=-0.0"
    await t.close();

    t = await startTestApp({ configYaml, store: { kind: 'memory' } });
    const positive = await tokenize(t, body('0.0')); // renders "temperature=0.0", cached under the key of "0"
    expect(positive).not.toBe(freshNegative);
    // Observed: the count of the 0.0 prompt (the SHA-1 of JSON.stringify is the same for both).
    expect(await tokenize(t, body('-0.0'))).toBe(freshNegative);
  });
});

describe('seams review 2: a model whose chat template does not compile', () => {
  it('X1 is an operator error (503 tokenizer_unavailable for chat, completions unaffected), not the client\'s 400', async () => {
    const configYaml = 'models:\n  small:\n    chatTemplate: "{% if %}"\nidentity: { trustUserHeader: true }\n';
    t = await startTestApp({ configYaml, store: { kind: 'memory' } });
    const chat = await t.envoy.check({ headers: { 'x-user-id': 'x1' }, body: { model: 'small', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5 } });
    const completions = await t.envoy.check({ path: '/v1/completions', headers: { 'x-user-id': 'x1' }, body: { model: 'small', prompt: 'Hi', max_tokens: 5 } });
    // Observed 400/400 "The prompt could not be counted for this model.": the ChatTemplate constructor
    // throws inside registry.ts's success callback, so the slot's error is not a TokenizerUnavailableError
    // and even requests that never render the template are refused, blaming the client.
    expect({ chat: chat.status, completions: completions.status }).toEqual({ chat: 503, completions: 200 });
  });
});
