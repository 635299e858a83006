import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { Gatekeeper, type RequestView } from '../src/admission/gatekeeper.js';
import { parseLimitsYaml } from '../src/config/load.js';
import { QuotaEngine } from '../src/quota/engine.js';
import { MemoryStore } from '../src/quota/memory-store.js';
import { createLogger } from '../src/telemetry/logger.js';
import { createMetrics } from '../src/telemetry/metrics.js';
import { startTestApp } from './helpers/app.js';
import { codeLeaseName, rbacProblems, type RoleRule } from './helpers/kube-rbac.js';
import { docsOf, KubeTools, type Obj } from './helpers/kube-tools.js';
import { operatorSchemaProblems } from './helpers/prometheus-operator.js';

// The adversarial review of issue 12 (deploy/kustomize, the Helm chart's topologies, deploy/monitoring):
// each finding as the property that now holds. Alerts: promtool on the shipped rules file, with the
// series the code really exports in each situation. The rest: the repository's files, and the chart as
// the real helm renders it.

const RULES = resolve('deploy/monitoring/tokenwarden-alerts.rules.yaml');
const ALERTS: string[] = parse(readFileSync(RULES, 'utf8')).groups.flatMap((g: { rules: Array<{ alert: string }> }) => g.rules.map((r) => r.alert));
const scratch = mkdtempSync(join(tmpdir(), 'review-12-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

type Series = { series: string; values: string };

/** The alerts that are firing at evalTime on these series (promtool test rules, every alert expected quiet). */
function firing(series: Series[], evalTime: string): string[] {
  const file = join(scratch, `t${Math.random().toString(36).slice(2)}.test.yaml`);
  writeFileSync(
    file,
    stringify({
      rule_files: [RULES],
      evaluation_interval: '1m',
      tests: [{ interval: '1m', input_series: series, alert_rule_test: ALERTS.map((alertname) => ({ eval_time: evalTime, alertname, exp_alerts: [] })) }],
    }),
  );
  try {
    execFileSync('promtool', ['test', 'rules', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
    return [];
  } catch (err) {
    const out = `${(err as { stdout?: string }).stdout ?? ''}${(err as { stderr?: string }).stderr ?? ''}`;
    const names = [...out.matchAll(/alertname: (\w+), time:/g)].map((m) => m[1]!);
    if (names.length === 0) throw new Error(out);
    return [...new Set(names)].sort();
  }
}

const S = (labels: string, values: string): Series => ({ series: `${labels}`, values });
const L = (pod: string, extra = '') => `namespace="llm", job="llm/tokenwarden", pod="${pod}"${extra ? `, ${extra}` : ''}`;

/** A loopback port nobody listens on: a Redis that is down. */
const deadPort = () =>
  new Promise<number>((done) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => done(p));
    });
  });

/** What /metrics says after three readiness probes of a tokenwarden whose Redis is down. */
async function metricsWithRedisDown(): Promise<string> {
  const t = await startTestApp({ configYaml: 'models: { m1: {} }', store: { kind: 'redis', url: `redis://127.0.0.1:${await deadPort()}` } });
  try {
    for (let i = 0; i < 3; i++) expect((await fetch(`${t.http}/readyz`)).status).toBe(503);
    return await (await fetch(`${t.http}/metrics`)).text();
  } finally {
    await t.close();
  }
}

/** The labels (inside the braces) of a series in the exposition text, and its value. */
function sample(metrics: string, name: string, labelMatch: RegExp): { labels: string; value: number } {
  const line = metrics.split('\n').find((l) => l.startsWith(`${name}{`) && labelMatch.test(l));
  if (!line) throw new Error(`no ${name} series matching ${labelMatch} in /metrics`);
  const m = /^[^{]+\{([^}]*)\} (\S+)$/.exec(line)!;
  return { labels: m[1]!.replaceAll(',', ', '), value: Number(m[2]) };
}

describe('review 12: alerts at 3 a.m.', () => {
  it('D1 /readyz on a dead store says so in /metrics: tokenwarden_store_up 0 and one failed ping per probe', async () => {
    const metrics = await metricsWithRedisDown();
    expect(sample(metrics, 'tokenwarden_store_up', /store="redis"/).value).toBe(0);
    expect(sample(metrics, 'tokenwarden_store_errors_total', /operation="ping"/).value).toBe(3);
  }, 30_000);

  it('D1 a Redis outage in the shipped topologies pages someone, on the series the code exports', async () => {
    // Sidecar pods, failOpen false (base/limits.yaml). Redis dies at 10m. The Checks in flight fail
    // (store_errors reserve, 503 store_unavailable) for the ~15 s it takes /readyz to fail 3 probes;
    // then every vLLM pod is NotReady, its Service has no endpoints and no Check reaches tokenwarden
    // again. What still moves: the readiness probe (every 5 s, components/proxy) pings the store, sets
    // tokenwarden_store_up to 0 and counts a failed ping: 12 a minute. The label sets below are the
    // ones /metrics shows for a dead Redis (read from a running tokenwarden, plus the target labels).
    const metrics = await metricsWithRedisDown();
    const up = sample(metrics, 'tokenwarden_store_up', /store="redis"/).labels;
    const ping = sample(metrics, 'tokenwarden_store_errors_total', /operation="ping"/).labels;
    const series = ['vllm-llama-0', 'vllm-korean-0'].flatMap((pod) => [
      S(`tokenwarden_store_up{${L(pod, up)}}`, '1x10 0x50'),
      S(`tokenwarden_store_errors_total{${L(pod, ping)}}`, '0x10 12+12x49'),
      S(`tokenwarden_store_errors_total{${L(pod, 'operation="reserve"')}}`, '0x10 12x50'),
      S(`tokenwarden_decisions_total{${L(pod, 'result="denied", reason="store_unavailable"')}}`, '0x10 12x50'),
      S(`tokenwarden_decisions_total{${L(pod, 'result="allowed", reason="within_limits"')}}`, '0+60x10 600x50'),
      S(`tokenwarden_accesslog_entries_total{${L(pod, 'outcome="settled"')}}`, '0+60x10 600x50'),
      S(`tokenwarden_accesslog_streams{${L(pod)}}`, '4x60'),
      S(`tokenwarden_config_generation{${L(pod)}}`, '3x60'),
      S(`tokenwarden_leader{${L(pod)}}`, pod === 'vllm-llama-0' ? '1x60' : '0x60'),
    ]);
    expect(firing(series, '9m')).toEqual([]);
    expect(firing(series, '30m')).toEqual(['TokenwardenQuotaStoreDown', 'TokenwardenQuotaStoreErrors']);
    expect(firing(series, '55m')).toEqual(['TokenwardenQuotaStoreDown', 'TokenwardenQuotaStoreErrors']);
  }, 60_000);

  it('D2 one sidecar pod whose Envoy access-log stream is down is alerted (each Envoy logs only to its own 127.0.0.1 tokenwarden)', () => {
    // llama pod: busy, stream up, all settled. korean pod: 3 Checks a minute, its Envoy has no
    // access-log stream: every korean-llama request is charged in full and holds a concurrency slot 600 s.
    const series = [
      S(`tokenwarden_accesslog_streams{${L('vllm-llama-0')}}`, '4x60'),
      S(`tokenwarden_decisions_total{${L('vllm-llama-0', 'result="allowed", reason="within_limits"')}}`, '0+60x60'),
      S(`tokenwarden_accesslog_entries_total{${L('vllm-llama-0', 'outcome="settled"')}}`, '0+60x60'),
      S(`tokenwarden_accesslog_streams{${L('vllm-korean-0')}}`, '0x60'),
      S(`tokenwarden_decisions_total{${L('vllm-korean-0', 'result="allowed", reason="within_limits"')}}`, '0+3x60'),
    ];
    expect(firing(series, '50m')).toContain('TokenwardenAccessLogStreamDown');
  });

  it('D3 a tokenwarden that can never sync from Kubernetes (RBAC, missing CRD) is alerted', () => {
    // tokenquotas list answers 403 forever: reconcile() waits for all three informers, nothing is ever
    // applied, /readyz stays 503, the pods never become Ready. Only the watch-error counter moves.
    const series = [
      S(`tokenwarden_kube_watch_errors_total{${L('vllm-llama-0', 'informer="tokenquotas"')}}`, '0+2x60'),
      S(`tokenwarden_config_generation{${L('vllm-llama-0')}}`, '0x60'),
      S(`tokenwarden_configmap_invalid{${L('vllm-llama-0')}}`, '0x60'),
      S(`tokenwarden_leader{${L('vllm-llama-0')}}`, '1x60'),
      S(`tokenwarden_accesslog_streams{${L('vllm-llama-0')}}`, '0x60'),
    ];
    expect(firing(series, '45m')).toContain('TokenwardenKubeNeverSynced');
  });

  it('D4 a user refused with 429 because their day is used up is "near quota"', async () => {
    // 1000 tokens a day; each request reserves 100 (prompt) + 350 (max_tokens) = 450.
    const config = parseLimitsYaml('models: { m1: {} }\nidentity: { trustUserHeader: true }\ndefaults: { tokensPerDay: 1000 }\nmetrics: { userLabel: true }', 't');
    const metrics = createMetrics({ userLabel: true });
    const store = new MemoryStore(Date.now);
    const keeper = new Gatekeeper({ config: () => config, engine: new QuotaEngine(store, () => config, Date.now), counter: { count: async () => [100] }, metrics, logger: createLogger('silent') });
    const req: RequestView = { method: 'POST', path: '/v1/chat/completions', headers: new Map([['x-user-id', 'alice']]), body: JSON.stringify({ model: 'm1', max_tokens: 350, messages: [{ role: 'user', content: 'hi' }] }), bodyTruncated: false, filterMetadata: {} };
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push(await keeper.decide(req).then((v) => (v.kind === 'allow' ? 200 : v.status)));
    await store.close();
    expect(statuses).toEqual([200, 200, 429, 429]);
    const ratio = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'tokenwarden_quota_used_ratio')!.values[0]!.value;
    expect(ratio).toBe(0.9);
    const series = [S(`tokenwarden_quota_used_ratio{${L('vllm-llama-0', 'user="alice", model="m1", window="tokensPerDay"')}}`, `${ratio}x30`)];
    expect(firing(series, '20m')).toContain('TokenwardenUserNearQuota');
  });
});

// ---------------------------------------------------------------------------------------------

let tools: KubeTools;
const helm = (...args: string[]): string => tools.helm(...args);
beforeAll(() => {
  tools = new KubeTools('review-12-helm-');
});
afterAll(() => tools?.remove());
const flagAfter = (args: string[], name: string): string | undefined => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);

describe('review 12: what the issue asks for', () => {
  it('D6 README has a "Deploying" section: both topologies drawn, their commands, the RTX 4060 nodes, Redis, Prometheus and Grafana', () => {
    const readme = readFileSync('README.md', 'utf8');
    const start = readme.search(/^## Deploying$/m);
    expect(start).toBeGreaterThanOrEqual(0);
    const next = readme.slice(start + 1).search(/^## /m);
    const section = next < 0 ? readme.slice(start) : readme.slice(start, start + 1 + next);
    const drawings = [...section.matchAll(/```\n([\s\S]*?)```/g)].map((m) => m[1]!).filter((b) => b.includes('client ──▶') && b.includes('Redis'));
    expect(drawings).toHaveLength(2);
    expect(drawings[0]).toMatch(/vLLM pod[\s\S]*Envoy[\s\S]*tokenwarden[\s\S]*vLLM 127\.0\.0\.1:8000/);
    expect(drawings[1]).toMatch(/gateway pod[\s\S]*Envoy[\s\S]*tokenwarden[\s\S]*vLLM pods/);
    for (const text of [
      'kubectl apply -k deploy/kustomize/overlays/sidecar',
      'deploy/kustomize/overlays/gateway',
      'helm install tokenwarden charts/tokenwarden -n llm --set topology=sidecar',
      'topology=gateway',
      'nvidia.com/gpu.product: NVIDIA-GeForce-RTX-4060',
      'redis.url=',
      'Production Redis',
      'PodMonitor',
      'deploy/monitoring/prometheusrule.yaml',
      'deploy/monitoring/grafana-dashboard-configmap.yaml',
    ]) {
      expect(section, text).toContain(text);
    }
  });

  it("D6 the Prometheus Operator's objects are validated against its CRD schemas by the kustomize, Helm and alert tests", () => {
    // The shared check refuses what the API server would: a wrong type, a missing field, an unknown one.
    const rule = parse(readFileSync('deploy/monitoring/prometheusrule.yaml', 'utf8'));
    expect(operatorSchemaProblems(rule)).toEqual([]);
    rule.spec.groups[0].rules[0].for = 5;
    rule.spec.groups[0].interval_ = '1m';
    expect(operatorSchemaProblems(rule)).toEqual(['PrometheusRule/tokenwarden: data/spec/groups/0/rules/0/for must be string', 'PrometheusRule/tokenwarden.spec.groups[0].interval_: no such field']);
    // ... and the tests that see the kustomize build, every chart topology and every file under deploy/ use it.
    for (const file of ['test/kustomize.test.ts', 'test/helm-topologies.test.ts', 'test/alerts.test.ts']) {
      const text = readFileSync(file, 'utf8');
      expect(text, file).toContain("from './helpers/prometheus-operator.js'");
      expect(text.match(/operatorSchemaProblems/g)?.length ?? 0, file).toBeGreaterThanOrEqual(2);
    }
  });

  it("D7 every Role of tokenwarden grants what src/kube uses, naming the one ConfigMap and the one Lease (resourceNames)", () => {
    const lease = codeLeaseName();
    const roles: Array<{ where: string; rules: RoleRule[]; configMap: string }> = [];
    // kustomize: base/rbac.yaml, and the --configmap the proxy component gives every tokenwarden.
    const proxy = docsOf(readFileSync('deploy/kustomize/components/proxy/proxy.yaml', 'utf8'))[0]!;
    const twArgs: string[] = proxy.spec.template.spec.containers.find((c: Obj) => c.name === 'tokenwarden').args;
    roles.push({ where: 'deploy/kustomize/base/rbac.yaml', rules: docsOf(readFileSync('deploy/kustomize/base/rbac.yaml', 'utf8')).find((d) => d.kind === 'Role')!.rules, configMap: flagAfter(twArgs, '--configmap')! });
    // The plain manifests.
    const plain = docsOf(readFileSync('deploy/tokenwarden.yaml', 'utf8'));
    const plainArgs: string[] = plain.find((d) => d.kind === 'Deployment')!.spec.template.spec.containers[0].args;
    roles.push({ where: 'deploy/tokenwarden.yaml', rules: plain.find((d) => d.kind === 'Role')!.rules, configMap: flagAfter(plainArgs, '--configmap')! });
    // The chart, every topology, under a release name other than tokenwarden.
    for (const topology of ['sidecar', 'gateway', 'central']) {
      const docs = docsOf(helm('template', 'tw', 'charts/tokenwarden', '--namespace', 'llm', '--set', `topology=${topology}`));
      const args = docs.filter((d) => d.kind === 'Deployment').flatMap((d) => d.spec.template.spec.containers).filter((c: Obj) => c.args?.includes('--kube')).map((c: Obj) => flagAfter(c.args, '--configmap'));
      expect(new Set(args), topology).toEqual(new Set(['tw-limits']));
      roles.push({ where: `chart topology=${topology}`, rules: docs.find((d) => d.kind === 'Role')!.rules, configMap: 'tw-limits' });
    }
    for (const { where, rules, configMap } of roles) {
      expect(rbacProblems(rules, { configMap, lease }), where).toEqual([]);
      const named = rules.filter((r) => r.resourceNames);
      expect(named.map((r) => `${r.resources}:${r.resourceNames}`).sort(), where).toEqual([`configmaps:${configMap}`, `leases:${lease}`]);
    }
  });

  it('D8 Envoy is pinned to one supported patch release, set in one place per packaging (kustomize images:, the chart, compose)', () => {
    const kustomization = parse(readFileSync('deploy/kustomize/components/proxy/kustomization.yaml', 'utf8'));
    const pin = (kustomization.images as Obj[]).find((i) => i.name === 'envoyproxy/envoy');
    expect(pin?.newTag).toMatch(/^v1\.(\d+)\.(\d+)$/);
    const image = `envoyproxy/envoy:${pin!.newTag}`;
    // Every tagged reference to the image outside the tests names exactly that one (proxy.yaml names it
    // without a tag: the kustomization's images: sets it).
    const files = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : /\.(ya?ml|md|tpl|json|txt)$|^(Dockerfile|Makefile)$/.test(e.name) ? [join(dir, e.name)] : []));
    const references = ['README.md', 'compose.yaml', ...['deploy', 'charts', 'envoy', 'docs', 'demo'].filter(existsSync).flatMap(files)].flatMap((file) =>
      [...readFileSync(file, 'utf8').matchAll(/envoyproxy\/envoy(?::[\w.-]+)?(?![\w/-])/g)].map((m) => ({ file, ref: m[0] })),
    );
    expect(references.filter(({ ref }) => ref === image).map(({ file }) => file)).toEqual(expect.arrayContaining(['charts/tokenwarden/values.yaml', 'compose.yaml', 'deploy/kustomize/README.md', 'README.md']));
    expect(references.filter(({ ref }) => ref.includes(':') && ref !== image)).toEqual([]);
    expect(readFileSync('deploy/kustomize/components/proxy/proxy.yaml', 'utf8')).toMatch(/^\s+image: envoyproxy\/envoy$/m);
    expect(parse(readFileSync('charts/tokenwarden/values.yaml', 'utf8')).envoy.image).toBe(image);
    // deploy/kustomize/README.md says which release and until when its minor is supported (Envoy: 12
    // months after the minor's first release). Not compared with today's clock: a test must not start
    // failing on a date; the pinned, non-floating tag above is what is checked.
    const readme = readFileSync('deploy/kustomize/README.md', 'utf8');
    expect(readme).toContain(`\`${image}\``);
    expect(readme).toMatch(/supported \*\*until \d{1,2} \w+ \d{4}\*\*/);
  });
});

// The helper itself must be able to see a firing alert, or every "not fired" above proves nothing.
describe('review 12: harness', () => {
  it('firing() reports an alert that fires', () => {
    const s = [S(`tokenwarden_configmap_invalid{${L('p')}}`, '1x30')];
    expect(firing(s, '20m')).toEqual(['TokenwardenConfigMapInvalid']);
    expect(existsSync(RULES)).toBe(true);
  });
});
