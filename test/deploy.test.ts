import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseLimitsYaml } from '../src/config/load.js';
import { codeLeaseName, rbacProblems } from './helpers/kube-rbac.js';
import { admittedPeers, canonicalJson, hardeningProblems, podLabels, schemaProblems, selects } from './helpers/kube-manifests.js';

describe('deploy/tokenwarden.yaml', () => {
  const docs = parseAllDocuments(readFileSync('deploy/tokenwarden.yaml', 'utf8')).map((d) => d.toJS());
  const byKind = (kind: string) => docs.find((d) => d.kind === kind);

  it('runs the Kubernetes controller with its identity and namespace from the pod', () => {
    const container = byKind('Deployment').spec.template.spec.containers[0];
    expect(container.args).toContain('--kube');
    expect(container.env.map((e: { name: string }) => e.name)).toEqual(expect.arrayContaining(['POD_NAME', 'TOKENWARDEN_NAMESPACE']));
    expect(byKind('RoleBinding').subjects[0].name).toBe(byKind('Deployment').spec.template.spec.serviceAccountName);
  });

  it('grants exactly what src/kube uses, on its limits ConfigMap and leader Lease by name', () => {
    const args: string[] = byKind('Deployment').spec.template.spec.containers[0].args;
    const configMap = args[args.indexOf('--configmap') + 1]!;
    expect(configMap).toBe(byKind('ConfigMap').metadata.name);
    expect(rbacProblems(byKind('Role').rules, { configMap, lease: codeLeaseName() })).toEqual([]);
  });

  it('ships a ConfigMap whose limits.yaml is a valid limits file', () => {
    expect(() => parseLimitsYaml(byKind('ConfigMap').data['limits.yaml'], 'ConfigMap')).not.toThrow();
  });

  it('exposes the contract ports and probes the contract paths', () => {
    const container = byKind('Deployment').spec.template.spec.containers[0];
    expect(container.ports).toEqual([
      { name: 'grpc', containerPort: 9001 },
      { name: 'http', containerPort: 8080 },
    ]);
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    expect(byKind('Service').spec.ports.map((p: { port: number }) => p.port)).toEqual([9001, 8080]);
    const selector = byKind('Deployment').spec.selector.matchLabels;
    expect(byKind('Deployment').spec.template.metadata.labels).toMatchObject(selector);
    expect(byKind('Service').spec.selector).toEqual(selector);
  });
});

// The plain manifests of the central topology (README, "Deploying": the Helm chart's topology=central
// renders the same tokenwarden), checked as test/kustomize.test.ts checks the overlays.
describe('deploy/tokenwarden.yaml and deploy/redis.yaml', () => {
  const read = (file: string) => parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJS());
  const tokenwarden = read('deploy/tokenwarden.yaml');
  const redis = read('deploy/redis.yaml');
  const deployment = (docs: any[]) => docs.find((d) => d.kind === 'Deployment');

  it("validate against Kubernetes' schemas (kubernetes-models, no unknown fields)", () => {
    expect(schemaProblems(tokenwarden)).toEqual([]);
    expect(schemaProblems(redis)).toEqual([]);
  });

  it('pass the restricted Pod Security Standard; Redis also runs read-only with its /data on a volume, limits and no service-account token', () => {
    expect(hardeningProblems(tokenwarden, { restrictedOnly: true })).toEqual([]);
    expect(hardeningProblems(redis)).toEqual([]);
    const spec = deployment(redis).spec.template.spec;
    const container = spec.containers[0];
    const args: string[] = container.args;
    const dir = args[args.indexOf('--dir') + 1];
    const mount = container.volumeMounts.find((m: { mountPath: string }) => m.mountPath === dir);
    expect(spec.volumes.find((v: { name: string }) => v.name === mount?.name)?.emptyDir).toBeDefined();
  });

  it('admit only tokenwarden to Redis, and to tokenwarden the Envoy pods (gRPC, HTTP) and Prometheus (HTTP)', () => {
    expect(admittedPeers(redis, deployment(redis), 6379)).toEqual([canonicalJson({ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'tokenwarden' } } })]);
    const peer = JSON.parse(admittedPeers(redis, deployment(redis), 6379)[0]!);
    expect(selects(peer.podSelector, podLabels(deployment(tokenwarden)))).toBe(true);
    const envoy = canonicalJson({ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'envoy' } } });
    expect(admittedPeers(tokenwarden, deployment(tokenwarden), 9001)).toEqual([envoy]);
    expect(admittedPeers(tokenwarden, deployment(tokenwarden), 8080)).toEqual([
      envoy,
      canonicalJson({ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } }, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } }),
    ]);
  });

  it('the checks can fail: a root Redis with a writable root filesystem, an unknown field', () => {
    const broken = structuredClone(redis);
    const c = deployment(broken).spec.template.spec.containers[0];
    delete c.securityContext;
    c.securityContext = { runAsUser: 0, readOnlyRootFileSystem: true };
    delete deployment(broken).spec.template.spec.securityContext;
    expect(hardeningProblems(broken, { restrictedOnly: true })).toEqual([
      'Deployment/tokenwarden-redis/redis: runAsNonRoot is not true',
      'Deployment/tokenwarden-redis/redis: runs as UID 0',
      'Deployment/tokenwarden-redis/redis: allowPrivilegeEscalation is not false',
      'Deployment/tokenwarden-redis/redis: does not drop ALL capabilities',
      'Deployment/tokenwarden-redis/redis: seccompProfile is not RuntimeDefault',
    ]);
    expect(schemaProblems(broken)).toEqual(['Deployment/tokenwarden-redis.spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem: no such field in V1SecurityContext']);
  });
});
