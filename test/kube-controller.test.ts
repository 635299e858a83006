import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { CoreV1Api, KubeConfig, ListWatch, Watch, type V1ConfigMap } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KubeController } from '../src/kube/controller.js';
import { SupervisedInformer } from '../src/kube/supervised-informer.js';
import { createLogger } from '../src/telemetry/logger.js';
import { createMetrics } from '../src/telemetry/metrics.js';
import { ADMIN, startTestApp, TEST_ADMIN_TOKEN, type TestApp } from './helpers/app.js';
import { FakeKubeApiServer } from './helpers/fake-kube-apiserver.js';

const NS = 'llm';
const LIMITS = (defaultTpm: number) => `
defaults: { tokensPerMinute: ${defaultTpm} }
models: { m1: {}, m2: {} }
identity: { trustUserHeader: true }
tokenization: { workers: 0 }
admin: { tokenSha256: "${createHash('sha256').update(TEST_ADMIN_TOKEN).digest('hex')}" }
`;
/** Every (resource, verb) the controller was seen to use, across all tests here. */
const used = new Set<string>();
function recordVerbs(fake: FakeKubeApiServer): void {
  for (const { method, url } of fake.requests) {
    const path = new URL(url, 'http://x').pathname;
    const watch = url.includes('watch=true');
    const match = /\/(configmaps|secrets|tokenquotas|leases)(\/[^/]+)?(\/status)?$/.exec(path);
    if (!match) continue;
    const resource = match[1] + (match[3] ? '/status' : '');
    const verb = method === 'GET' ? (watch ? 'watch' : match[2] ? 'get' : 'list') : { POST: 'create', PUT: 'update', PATCH: 'patch' }[method];
    used.add(`${resource}:${verb}`);
  }
}

const FAST = { debounceMs: 20, resyncMs: 60_000, silenceMs: 60_000, leaseDurationMs: 1000, renewDeadlineMs: 700, retryPeriodMs: 150 };

function kubeConfigFor(server: FakeKubeApiServer, token = 'test-token'): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromClusterAndUser({ name: 'fake', server: server.url, skipTLSVerify: true }, { name: 'tokenwarden', token });
  return kc;
}

/** tokenwarden in --kube mode against the stand-in apiserver. */
function startKubeApp(fake: FakeKubeApiServer, timings: object = FAST): Promise<TestApp> {
  return startTestApp({
    configYaml: '{}',
    store: { kind: 'memory' },
    kube: { kubeConfig: kubeConfigFor(fake), namespace: NS, configMapName: 'tokenwarden-limits', identity: 'pod-a', timings },
  });
}

const configMap = (text: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'tokenwarden-limits' }, data: { 'limits.yaml': text } });
const tokenQuota = (name: string, spec: object, created?: string) => ({
  apiVersion: 'tokenwarden.dev/v1alpha1',
  kind: 'TokenQuota',
  metadata: { name, ...(created ? { creationTimestamp: created } : {}) },
  spec,
});

async function within<T>(ms: number, read: () => Promise<T>, done: (value: T) => boolean, everyMs = 10): Promise<{ value: T; elapsedMs: number }> {
  const start = Date.now();
  for (;;) {
    const value = await read();
    if (done(value)) return { value, elapsedMs: Date.now() - start };
    if (Date.now() - start > ms) throw new Error(`not reached within ${ms} ms; last value: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

describe('Kubernetes controller (real client-node informers against a kube-apiserver stand-in)', () => {
  let fake: FakeKubeApiServer;
  let t: TestApp;

  beforeEach(async () => {
    fake = new FakeKubeApiServer();
    await fake.start();
    fake.put(NS, 'configmaps', configMap(LIMITS(1000)));
    t = await startKubeApp(fake);
    await within(5000, async () => (await fetch(`${t.http}/readyz`)).status, (s) => s === 200);
  });
  afterEach(async () => {
    await t.close();
    recordVerbs(fake);
    await fake.stop();
  });

  const tpmLimit = async (user: string, model = 'm1', key?: string) => {
    const res = await t.envoy.check({
      headers: key ? { authorization: `Bearer ${key}` } : { 'x-user-id': user },
      path: '/v1/completions',
      body: { model, prompt: 'hi', max_tokens: 1 },
    });
    // A 429 from the token window names the limit too: polling (which charges) cannot hide it.
    const limit = res.headers['x-ratelimit-limit-tokens'];
    return (res.status === 200 || res.status === 429) && limit !== undefined ? Number(limit) : res.status;
  };
  const readyCondition = (name: string) => (fake.get(NS, 'tokenquotas', name)?.['status']?.conditions ?? []).find((c: { type: string }) => c.type === 'Ready');

  it('enforces the ConfigMap and follows its changes', async () => {
    expect(await tpmLimit('ann')).toBe(1000);
    fake.put(NS, 'configmaps', configMap(LIMITS(2500)));
    expect((await within(1000, () => tpmLimit('ann'), (v) => v === 2500)).elapsedMs).toBeLessThan(1000);
  });

  it('applies TokenQuota create, update and delete within a second, without resetting counters', async () => {
    fake.put(NS, 'tokenquotas', tokenQuota('ann-m1', { subjects: { users: ['ann'] }, models: ['m1'], limits: { tokensPerMinute: 300 } }));
    expect((await within(1000, () => tpmLimit('ann'), (v) => v === 300)).elapsedMs).toBeLessThan(1000);
    const used = await (await fetch(`${t.http}/v1/usage/ann?model=m1`, { headers: ADMIN })).json();
    fake.put(NS, 'tokenquotas', tokenQuota('ann-m1', { subjects: { users: ['ann'] }, models: ['m1'], limits: { tokensPerMinute: 600 } }));
    await within(1000, () => tpmLimit('ann'), (v) => v === 600);
    const after = (await (await fetch(`${t.http}/v1/usage/ann?model=m1`, { headers: ADMIN })).json()) as any;
    expect(after.models[0].windows[0].used).toBeGreaterThan((used as any).models[0].windows[0].used);
    fake.delete(NS, 'tokenquotas', 'ann-m1');
    await within(1000, () => tpmLimit('ann'), (v) => v === 1000);
    expect(await tpmLimit('bob')).toBe(1000);
  });

  it('takes API keys from labelled Secrets and drops them when the Secret goes', async () => {
    const secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'cora-keys', labels: { 'tokenwarden.dev/api-keys': 'true' }, annotations: { 'tokenwarden.dev/user': 'cora' } },
      data: { main: Buffer.from('sk-cora-1').toString('base64') },
    };
    fake.put(NS, 'secrets', { ...secret, metadata: { ...secret.metadata, name: 'unlabelled', labels: {} } });
    fake.put(NS, 'secrets', secret);
    await within(1000, () => tpmLimit('', 'm1', 'sk-cora-1'), (v) => v === 1000);
    fake.delete(NS, 'secrets', 'cora-keys');
    await within(1000, () => tpmLimit('', 'm1', 'sk-cora-1'), (v) => v === 401);
  });

  it('reports an invalid TokenQuota in its status and keeps every other quota working', async () => {
    fake.put(NS, 'tokenquotas', tokenQuota('good', { subjects: { users: ['dan'] }, models: ['m1'], limits: { tokensPerMinute: 200 } }));
    fake.put(NS, 'tokenquotas', tokenQuota('bad', { subjects: { users: ['dan'] }, models: ['m2'], limits: { tokensPerMinute: -1 } }));
    await within(2000, async () => readyCondition('bad'), (c) => c !== undefined);
    expect(readyCondition('bad')).toMatchObject({ status: 'False', reason: 'InvalidSpec', observedGeneration: 1 });
    expect(readyCondition('bad').message).toContain('spec.limits.tokensPerMinute');
    expect(readyCondition('good')).toMatchObject({ status: 'True', reason: 'Applied' });
    expect(await tpmLimit('dan')).toBe(200);
    expect(await tpmLimit('dan', 'm2')).toBe(1000);
    expect(fake.requests.filter((r) => r.method === 'PATCH').every((r) => r.contentType === 'application/merge-patch+json')).toBe(true);
    // A fix is picked up, and observedGeneration follows the spec's generation.
    fake.put(NS, 'tokenquotas', tokenQuota('bad', { subjects: { users: ['dan'] }, models: ['m2'], limits: { tokensPerMinute: 50 } }));
    await within(2000, async () => readyCondition('bad'), (c) => c?.status === 'True');
    expect(readyCondition('bad').observedGeneration).toBe(2);
    expect(await tpmLimit('dan', 'm2')).toBe(50);
  });

  it('refuses TokenQuotas for __proto__ and constructor, leaving everyone else and later ConfigMaps alone', async () => {
    fake.put(NS, 'tokenquotas', tokenQuota('ann-m1', { subjects: { users: ['ann'] }, models: ['m1'], limits: { tokensPerMinute: 300 } }));
    await within(1000, () => tpmLimit('ann'), (v) => v === 300);
    fake.put(NS, 'tokenquotas', tokenQuota('proto', { subjects: { users: ['__proto__'] }, models: ['*'], limits: { tokensPerMinute: 7 } }));
    fake.put(NS, 'tokenquotas', tokenQuota('ctor', { subjects: { users: ['constructor'] }, models: ['m1'], limits: { tokensPerMinute: 8 } }));
    await within(2000, async () => [readyCondition('proto'), readyCondition('ctor')], (conditions) => conditions.every(Boolean));
    expect(readyCondition('proto')).toMatchObject({ status: 'False', reason: 'InvalidSpec', message: 'spec.subjects.users.0: "__proto__" is reserved and cannot be a user name' });
    expect(readyCondition('ctor')).toMatchObject({ status: 'False', reason: 'InvalidSpec', message: 'spec.subjects.users.0: "constructor" is reserved and cannot be a user name' });
    expect(readyCondition('ann-m1')).toMatchObject({ status: 'True', reason: 'Applied' });
    const limits = async () => [await tpmLimit('ann'), await tpmLimit('ann', 'm2'), await tpmLimit('bob'), await tpmLimit('__proto__'), await tpmLimit('constructor', 'm1')];
    expect(await limits()).toEqual([300, 1000, 1000, 1000, 1000]);
    // A later ConfigMap change still takes effect, for everyone.
    fake.put(NS, 'configmaps', configMap(LIMITS(2500)));
    await within(1000, limits, (v) => JSON.stringify(v) === JSON.stringify([300, 2500, 2500, 2500, 2500]));
  });

  it('resolves conflicting TokenQuotas by age and reports the conflict on both', async () => {
    fake.put(NS, 'tokenquotas', tokenQuota('newer', { subjects: { users: ['eve'] }, models: ['m1'], limits: { tokensPerMinute: 900 } }, '2026-11-20T00:00:00Z'));
    fake.put(NS, 'tokenquotas', tokenQuota('older', { subjects: { users: ['eve'] }, models: ['m1'], limits: { tokensPerMinute: 100 } }, '2026-11-01T00:00:00Z'));
    await within(1000, () => tpmLimit('eve'), (v) => v === 100);
    const conflicted = (name: string) => (fake.get(NS, 'tokenquotas', name)?.['status']?.conditions ?? []).find((c: { type: string }) => c.type === 'Conflicted');
    await within(2000, async () => [conflicted('newer')?.status, conflicted('older')?.status], ([a, b]) => a === 'True' && b === 'True');
    expect(conflicted('newer').message).toBe('user "eve" on model "m1": overridden by llm/older (older)');
    expect(readyCondition('newer')).toMatchObject({ status: 'False', reason: 'Conflict' });
    expect(conflicted('older').message).toBe('user "eve" on model "m1": also claimed by llm/newer, which yields');
  });

  it('recovers from dropped watch connections and from 410 Gone, missing no change', async () => {
    expect(fake.openWatches()).toBe(3);
    fake.dropWatches();
    fake.put(NS, 'tokenquotas', tokenQuota('after-drop', { subjects: { users: ['fay'] }, models: ['m1'], limits: { tokensPerMinute: 111 } }));
    // Recovery windows are wider than the healthy path's one second: a restart waits out a jittered
    // backoff, and the suite runs files in parallel. A lost event would still fail (the watchdog is 60 s).
    // Each poll is a Check that charges the user: polled gently, a slow recovery cannot spend their quota.
    await within(15_000, () => tpmLimit('fay'), (v) => v === 111, 250);

    fake.expireWatches();
    fake.compactHistory();
    fake.put(NS, 'tokenquotas', tokenQuota('after-410', { subjects: { users: ['gus'] }, models: ['m1'], limits: { tokensPerMinute: 222 } }));
    fake.delete(NS, 'tokenquotas', 'after-drop');
    await within(15_000, async () => [await tpmLimit('gus'), await tpmLimit('fay')], ([g, f]) => g === 222 && f === 1000, 250);
    fake.bookmark();
    fake.put(NS, 'tokenquotas', tokenQuota('after-bookmark', { subjects: { users: ['hal'] }, models: ['m1'], limits: { tokensPerMinute: 333 } }));
    await within(1000, () => tpmLimit('hal'), (v) => v === 333);
    expect(fake.requests.some((r) => r.url.includes('watch=true') && r.url.includes('tokenquotas'))).toBe(true);
  });

  it('keeps the last good ConfigMap when it becomes invalid', async () => {
    fake.put(NS, 'configmaps', configMap('defaults: { tokensPerMinute: "lots" }'));
    await within(2000, async () => (await (await fetch(`${t.http}/metrics`)).text()).includes('tokenwarden_configmap_invalid 1'), Boolean);
    expect(await tpmLimit('ian')).toBe(1000);
  });
});

describe('readiness', () => {
  it('stays not ready until the limits ConfigMap exists and has been read', async () => {
    const fake = new FakeKubeApiServer();
    await fake.start();
    const t = await startKubeApp(fake);
    try {
      await new Promise((r) => setTimeout(r, 500));
      expect((await fetch(`${t.http}/readyz`)).status).toBe(503);
      // Until then a Check is refused (fail closed; failure_mode_allow must not turn "no limits yet" into free tokens).
      const early = await t.envoy.check({ headers: { 'x-user-id': 'u' }, path: '/v1/completions', body: { model: 'm1', prompt: 'x' } });
      expect(early.status).toBe(503);
      expect(JSON.parse(early.body).error.code).toBe('quota_unavailable');
      fake.put(NS, 'configmaps', configMap(LIMITS(1000)));
      await within(2000, async () => (await fetch(`${t.http}/readyz`)).status, (s) => s === 200);
    } finally {
      await t.close();
      await fake.stop();
    }
  });
});

describe('a watch that stalls without an error', () => {
  it('is rebuilt from a fresh list by the watchdog', async () => {
    const fake = new FakeKubeApiServer();
    await fake.start();
    fake.put(NS, 'configmaps', configMap(LIMITS(1000)));
    const t = await startKubeApp(fake, { ...FAST, silenceMs: 400 });
    try {
      await within(2000, async () => (await fetch(`${t.http}/readyz`)).status, (s) => s === 200);
      fake.stallWatches();
      fake.put(NS, 'configmaps', configMap(LIMITS(4242)));
      const check = async () => {
        const res = await t.envoy.check({ headers: { 'x-user-id': 'u' }, path: '/v1/completions', body: { model: 'm1', prompt: 'hi', max_tokens: 1 } });
        return Number(res.headers['x-ratelimit-limit-tokens']);
      };
      await within(3000, check, (v) => v === 4242);
    } finally {
      await t.close();
      await fake.stop();
    }
  });
});

describe('an informer whose start() rejects', () => {
  it('is restarted with backoff like any failed watch, and the process keeps running', async () => {
    const fake = new FakeKubeApiServer();
    await fake.start();
    fake.put(NS, 'configmaps', configMap(LIMITS(1000)));
    const kc = kubeConfigFor(fake);
    const core = kc.makeApiClient(CoreV1Api);
    /** Lists fine, but the first two watch requests cannot even be made (as when credentials fail to load). */
    class WatchFailingToStart extends Watch {
      failuresLeft = 2;
      override async watch(...args: Parameters<Watch['watch']>): Promise<AbortController> {
        if (this.failuresLeft-- > 0) throw new Error('cannot load credentials');
        return super.watch(...args);
      }
    }
    const watch = new WatchFailingToStart(kc);
    const errors: string[] = [];
    const informer = new SupervisedInformer<V1ConfigMap>({
      name: 'configmap',
      create: () => new ListWatch(`/api/v1/namespaces/${NS}/configmaps`, watch, () => core.listNamespacedConfigMap({ namespace: NS }), false),
      onChange: () => {},
      onError: (name) => errors.push(name),
      logger: createLogger('silent'),
      initialBackoffMs: 20,
    });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      informer.start();
      await within(3000, async () => informer.synced, Boolean);
      expect(errors).toEqual(['configmap', 'configmap']);
      fake.put(NS, 'configmaps', configMap(LIMITS(2000)));
      await within(1000, async () => informer.list()[0]?.data?.['limits.yaml'], (text) => text === LIMITS(2000));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await informer.stop();
      await fake.stop();
    }
  });
});

describe('leader election on a Lease', () => {
  it('hands over to another replica when the holder stops renewing; only the leader writes statuses', async () => {
    const fake = new FakeKubeApiServer();
    await fake.start();
    fake.put(NS, 'configmaps', configMap(LIMITS(1000)));
    const controller = (identity: string) =>
      new KubeController({
        kubeConfig: kubeConfigFor(fake, `token-${identity}`),
        namespace: NS,
        configMapName: 'tokenwarden-limits',
        identity,
        apply: () => {},
        logger: createLogger('silent'),
        metrics: createMetrics(),
        timings: FAST,
      });
    const a = controller('pod-a');
    const b = controller('pod-b');
    try {
      a.start();
      await within(2000, async () => a.isLeader, Boolean);
      b.start();
      await new Promise((r) => setTimeout(r, 600));
      expect([a.isLeader, b.isLeader]).toEqual([true, false]);
      expect(fake.get(NS, 'leases', 'tokenwarden-leader')?.['spec']).toMatchObject({ holderIdentity: 'pod-a', leaseTransitions: 0 });
      const statusWriters = () => new Set(fake.requests.filter((r) => r.method === 'PATCH').map((r) => r.authorization));
      fake.put(NS, 'tokenquotas', tokenQuota('q1', { subjects: { users: ['x'] }, models: ['m1'], limits: { tokensPerDay: 5 } }));
      await within(2000, async () => fake.get(NS, 'tokenquotas', 'q1')?.['status']?.conditions?.length, (n) => n === 2);
      expect(statusWriters()).toEqual(new Set(['Bearer token-pod-a']));

      // pod-a hangs: its renewals stop reaching the API server.
      fake.blockLeaseUpdatesFrom('pod-a');
      const { elapsedMs } = await within(4000, async () => [a.isLeader, b.isLeader], ([x, y]) => !x && y === true);
      expect(elapsedMs).toBeGreaterThan(500);
      expect(fake.get(NS, 'leases', 'tokenwarden-leader')?.['spec']).toMatchObject({ holderIdentity: 'pod-b', leaseTransitions: 1 });
      fake.put(NS, 'tokenquotas', tokenQuota('q2', { subjects: { users: ['y'] }, models: ['m9'], limits: { tokensPerDay: 5 } }));
      await within(2000, async () => fake.get(NS, 'tokenquotas', 'q2')?.['status']?.conditions?.length, (n) => n === 2);
      const q2Writers = fake.requests.filter((r) => r.method === 'PATCH' && r.url.includes('/q2/')).map((r) => r.authorization);
      expect(new Set(q2Writers)).toEqual(new Set(['Bearer token-pod-b']));
    } finally {
      await a.stop();
      await b.stop();
      recordVerbs(fake);
      await fake.stop();
    }
  });
});

describe('RBAC in deploy/tokenwarden.yaml', () => {
  it('grants exactly the verbs the controller used above', () => {
    const role = parseAllDocuments(readFileSync('deploy/tokenwarden.yaml', 'utf8'))
      .map((d) => d.toJS())
      .find((d) => d?.kind === 'Role');
    const granted = new Set<string>();
    for (const rule of role.rules) for (const resource of rule.resources) for (const verb of rule.verbs) granted.add(`${resource}:${verb}`);
    expect([...used].sort()).toEqual([...granted].sort());
  });
});
