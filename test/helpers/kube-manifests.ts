import * as k8s from '@kubernetes/client-node';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { isOperatorObject, operatorSchemaProblems } from './prometheus-operator.js';

// Checks of rendered Kubernetes manifests, shared by the tests that read them: test/kustomize.test.ts
// (both overlays), test/helm-chart.test.ts (the chart's central topology), test/deploy.test.ts (the
// plain manifests in deploy/). Each returns the problems it finds as "Kind/name...: problem", [] when
// there are none; test/kustomize.test.ts shows each of them failing on a broken copy.

// Rendered manifests are plain data; `any` keeps the structural checks readable.
type Obj = Record<string, any>;

export const workloads = (docs: Obj[]): Obj[] => docs.filter((d) => d.kind === 'Deployment' || d.kind === 'StatefulSet');
export const podSpec = (w: Obj): Obj => w.spec.template.spec;
export const podLabels = (w: Obj): Record<string, string> => w.spec.template.metadata?.labels ?? {};

/** Kubernetes label-selector semantics (matchLabels and matchExpressions). */
export function selects(selector: Obj | undefined, labels: Record<string, string>): boolean {
  if (!selector) return false;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    if (e.operator === 'In' && !(has && e.values.includes(labels[e.key]))) return false;
    if (e.operator === 'NotIn' && has && e.values.includes(labels[e.key])) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

// The constructors want typed input; the rendered objects are untyped data.
const SCHEMAS: Record<string, new (data: any) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'apiextensions.k8s.io/v1/CustomResourceDefinition': CustomResourceDefinition,
};

type AttributeMap = Array<{ baseName: string; type: string }>;
const clientModels = k8s as unknown as Record<string, { getAttributeTypeMap?: () => AttributeMap } | undefined>;
/**
 * kubernetes-models checks types and required fields but lets unknown fields through (a misspelt
 * readOnlyRootFileSystem would pass); @kubernetes/client-node's generated models list every field of
 * every type, so walk the object along them.
 */
function unknownFields(value: unknown, type: string, path: string): string[] {
  const array = /^Array<(.+)>$/.exec(type);
  if (array) return Array.isArray(value) ? value.flatMap((v, i) => unknownFields(v, array[1]!, `${path}[${i}]`)) : [];
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) return value && typeof value === 'object' ? Object.entries(value).flatMap(([k, v]) => unknownFields(v, map[1]!, `${path}.${k}`)) : [];
  const attributes = clientModels[type]?.getAttributeTypeMap?.();
  if (!attributes || !value || typeof value !== 'object') return [];
  return Object.entries(value as Obj).flatMap(([key, child]) => {
    const attribute = attributes.find((a) => a.baseName === key);
    return attribute ? unknownFields(child, attribute.type, `${path}.${key}`) : [`${path}.${key}: no such field in ${type}`];
  });
}

/**
 * Every object against its schema: Kubernetes' own kinds with kubernetes-models plus the field lists of
 * @kubernetes/client-node (no unknown fields), the Prometheus Operator's kinds against its CRD schemas
 * (test/helpers/prometheus-operator.ts), and each PodMonitor against the pods it should scrape (it
 * selects some, and each has the port it names). Any other kind is a problem: nothing checks it.
 */
export function schemaProblems(docs: Obj[]): string[] {
  return docs.flatMap((doc) => {
    const where = `${doc.kind}/${doc.metadata?.name}`;
    const key = `${doc.apiVersion}/${doc.kind}`;
    const Model = SCHEMAS[key];
    if (Model) {
      const problems: string[] = [];
      try {
        new Model(doc).validate();
      } catch (err) {
        problems.push(`${where}: ${(err as Error).message}`);
      }
      const version = (doc.apiVersion as string).split('/').at(-1)!;
      const type = `${version.charAt(0).toUpperCase()}${version.slice(1)}${doc.kind}`;
      if (!clientModels[type]?.getAttributeTypeMap) problems.push(`${where}: no field list for ${type}`);
      return [...problems, ...unknownFields(doc, type, where)];
    }
    if (isOperatorObject(doc)) {
      const problems = operatorSchemaProblems(doc);
      if (doc.kind !== 'PodMonitor') return problems;
      const pods = workloads(docs).filter((w) => selects(doc.spec?.selector, podLabels(w)));
      if (pods.length === 0) problems.push(`${where}: selects no pods`);
      for (const e of doc.spec?.podMetricsEndpoints ?? []) {
        for (const w of pods) if (!podSpec(w).containers.some((c: Obj) => (c.ports ?? []).some((p: Obj) => p.name === e.port))) problems.push(`${where}: ${w.metadata.name} has no port ${e.port}`);
      }
      return problems;
    }
    return [`${where}: no schema to check ${key} against`];
  });
}

const POD_SECURITY_VOLUMES = new Set(['emptyDir', 'configMap', 'secret', 'projected', 'persistentVolumeClaim', 'downwardAPI']);

/**
 * What the "restricted" Pod Security Standard refuses in a workload's pod template (host namespaces,
 * volume types, non-root, privilege escalation, capabilities, seccomp) and, unless `restrictedOnly`,
 * what these manifests hold themselves to besides: no service-account token for every container, a
 * grace period, a read-only root filesystem, CPU and memory requests and limits.
 */
export function hardeningProblems(docs: Obj[], { restrictedOnly = false }: { restrictedOnly?: boolean } = {}): string[] {
  const problems: string[] = [];
  const beyond = !restrictedOnly;
  for (const w of workloads(docs)) {
    const spec = podSpec(w);
    const pod = spec.securityContext ?? {};
    const where = `${w.kind}/${w.metadata.name}`;
    if (spec.hostNetwork || spec.hostPID || spec.hostIPC) problems.push(`${where}: shares a host namespace`);
    if (beyond && spec.automountServiceAccountToken !== false) problems.push(`${where}: mounts a service-account token into every container`);
    if (beyond && typeof spec.terminationGracePeriodSeconds !== 'number') problems.push(`${where}: no terminationGracePeriodSeconds`);
    for (const v of spec.volumes ?? []) {
      const type = Object.keys(v).find((k) => k !== 'name')!;
      if (!POD_SECURITY_VOLUMES.has(type)) problems.push(`${where}: volume ${v.name} is ${type}`);
    }
    for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
      const sc = c.securityContext ?? {};
      const at = `${where}/${c.name}`;
      const effective = (k: string) => sc[k] ?? pod[k];
      if (effective('runAsNonRoot') !== true) problems.push(`${at}: runAsNonRoot is not true`);
      if (effective('runAsUser') === 0) problems.push(`${at}: runs as UID 0`);
      if (sc.privileged) problems.push(`${at}: privileged`);
      if (beyond && sc.readOnlyRootFilesystem !== true) problems.push(`${at}: readOnlyRootFilesystem is not true`);
      if (sc.allowPrivilegeEscalation !== false) problems.push(`${at}: allowPrivilegeEscalation is not false`);
      if (JSON.stringify(sc.capabilities?.drop) !== '["ALL"]') problems.push(`${at}: does not drop ALL capabilities`);
      if ((sc.capabilities?.add ?? []).length > 0) problems.push(`${at}: adds capabilities`);
      if (effective('seccompProfile')?.type !== 'RuntimeDefault') problems.push(`${at}: seccompProfile is not RuntimeDefault`);
      if (beyond) for (const kind of ['requests', 'limits']) for (const r of ['cpu', 'memory']) if (!c.resources?.[kind]?.[r]) problems.push(`${at}: no ${r} ${kind}`);
    }
  }
  return problems;
}

/** The container port a NetworkPolicy port names (by name or number) in this pod, or undefined. */
export function podPort(w: Obj, port: string | number): number | undefined {
  for (const c of podSpec(w).containers as Obj[]) {
    for (const p of (c.ports ?? []) as Obj[]) if (p.name === port || p.containerPort === port) return p.containerPort;
  }
  return typeof port === 'number' ? port : undefined;
}

/** JSON with object keys sorted: the same text for the same peer however a renderer ordered its keys. */
export function canonicalJson(value: unknown): string {
  const sort = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(sort) : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort((v as Obj)[k])])) : v;
  return JSON.stringify(sort(value));
}

/**
 * The ingress peers that may reach `containerPort` of a workload's pods, by the NetworkPolicies that
 * select them: 'not isolated' when none does (every source may), 'every source' for a rule without
 * `from`, else each peer (canonicalJson).
 */
export function admittedPeers(docs: Obj[], w: Obj, containerPort: number): string[] {
  const policies = docs.filter((d) => d.kind === 'NetworkPolicy' && selects(d.spec.podSelector, podLabels(w)) && (d.spec.policyTypes ?? ['Ingress']).includes('Ingress'));
  if (policies.length === 0) return ['not isolated'];
  const peers: string[] = [];
  for (const p of policies) {
    for (const rule of (p.spec.ingress ?? []) as Obj[]) {
      const admitsPort = !rule.ports || rule.ports.length === 0 || rule.ports.some((port: Obj) => port.port === undefined || podPort(w, port.port) === containerPort);
      if (!admitsPort) continue;
      if (!rule.from || rule.from.length === 0) peers.push('every source');
      else peers.push(...rule.from.map((peer: Obj) => canonicalJson(peer)));
    }
  }
  return [...new Set(peers)];
}
