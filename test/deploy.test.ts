import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseLimitsYaml } from '../src/config/load.js';
import { codeLeaseName, rbacProblems } from './helpers/kube-rbac.js';

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
