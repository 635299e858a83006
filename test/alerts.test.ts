import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { Gatekeeper, type RequestView } from '../src/admission/gatekeeper.js';
import { parseLimitsYaml } from '../src/config/load.js';
import { QuotaEngine } from '../src/quota/engine.js';
import { MemoryStore } from '../src/quota/memory-store.js';
import { createLogger } from '../src/telemetry/logger.js';
import { createMetrics } from '../src/telemetry/metrics.js';
import { isOperatorObject, operatorSchemaProblems } from './helpers/prometheus-operator.js';

// The alerts (deploy/monitoring/), their promtool unit tests (test/promtool/) and their runbook (docs/).
// promtool is Debian's prometheus package (`make test` installs it when missing).
const RULES_FILE = 'deploy/monitoring/tokenwarden-alerts.rules.yaml';
const PROMETHEUS_RULE_FILE = 'deploy/monitoring/prometheusrule.yaml';
const UNIT_TEST_DIR = 'test/promtool';
const RUNBOOK = 'docs/runbook.md';
const PROMTOOL = process.env['PROMTOOL'] ?? 'promtool';
/** Labels Prometheus's scrape adds to every series (not tokenwarden's own). */
const TARGET_LABELS = new Set(['namespace', 'job', 'pod', 'instance', 'service', 'container']);

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleGroup {
  name: string;
  rules: AlertRule[];
}
interface UnitTestFile {
  rule_files: string[];
  tests: Array<{
    name: string;
    alert_rule_test?: Array<{
      eval_time: string;
      alertname: string;
      exp_alerts?: Array<{ exp_labels?: Record<string, string>; exp_annotations?: Record<string, string> }>;
    }>;
  }>;
}

const groups: RuleGroup[] = parse(readFileSync(RULES_FILE, 'utf8')).groups;
const alerts = groups.flatMap((g) => g.rules);
const unitTestFiles = readdirSync(UNIT_TEST_DIR)
  .filter((f) => f.endsWith('.test.yaml'))
  .sort()
  .map((f) => join(UNIT_TEST_DIR, f));

/** Runs promtool; a non-zero exit fails the calling test with everything promtool printed. */
function promtool(...args: string[]): string {
  try {
    return execFileSync(PROMTOOL, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stdout?: string; stderr?: string; status?: number };
    if (e.code === 'ENOENT') throw new Error(`${PROMTOOL} not found: install Debian's prometheus package (make test does)`);
    throw new Error(`promtool ${args.join(' ')} failed (exit ${e.status}):\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

function durationSeconds(text: string): number {
  const match = /^(\d+)(s|m|h)$/.exec(text);
  if (!match) throw new Error(`unexpected duration ${text}`);
  return Number(match[1]) * { s: 1, m: 60, h: 3600 }[match[2] as 's' | 'm' | 'h'];
}

describe('alert rules', () => {
  it('pass promtool check rules', () => {
    const output = promtool('check', 'rules', RULES_FILE);
    expect(output).toContain(`SUCCESS: ${alerts.length} rules found`);
    expect(alerts.length).toBeGreaterThanOrEqual(13);
  });

  it('ship as a PrometheusRule with exactly the groups of the rules file', () => {
    const object = parse(readFileSync(PROMETHEUS_RULE_FILE, 'utf8'));
    expect(object).toMatchObject({ apiVersion: 'monitoring.coreos.com/v1', kind: 'PrometheusRule', metadata: { name: 'tokenwarden' } });
    expect(Object.keys(object.spec)).toEqual(['groups']);
    // Any edit to one file and not the other fails here; copy the groups across (indented under spec:).
    expect(object.spec.groups).toEqual(groups);
  });

  it.each(unitTestFiles)('pass promtool test rules %s', (file) => {
    expect(promtool('test', 'rules', file)).toContain('SUCCESS');
  });

  it('are each unit-tested firing, with every label and annotation, and quiet', () => {
    const cases = new Map<string, { fires: number; quiet: number }>(alerts.map((a) => [a.alert, { fires: 0, quiet: 0 }]));
    for (const file of unitTestFiles) {
      const unit: UnitTestFile = parse(readFileSync(file, 'utf8'));
      expect(unit.rule_files.map((f) => resolve(UNIT_TEST_DIR, f))).toEqual([resolve(RULES_FILE)]);
      for (const test of unit.tests) {
        for (const check of test.alert_rule_test ?? []) {
          const rule = alerts.find((a) => a.alert === check.alertname);
          expect(rule, `${file}: ${test.name} tests an unknown alert ${check.alertname}`).toBeDefined();
          const counts = cases.get(check.alertname)!;
          const expected = check.exp_alerts ?? [];
          if (expected.length === 0) counts.quiet++;
          else counts.fires++;
          for (const alert of expected) {
            expect(alert.exp_labels?.['severity'], `${test.name}`).toBe(rule!.labels?.['severity']);
            expect(Object.keys(alert.exp_annotations ?? {}).sort(), `${test.name}`).toEqual(['description', 'runbook_url', 'summary']);
          }
        }
      }
    }
    const missing = [...cases].filter(([, c]) => c.fires === 0 || c.quiet === 0).map(([name, c]) => `${name} (fires ${c.fires}, quiet ${c.quiet})`);
    expect(missing, 'alerts without a firing or a quiet promtool case').toEqual([]);
  });

  it('make promtool fail on a wrong expectation (the harness sees failures)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tokenwarden-alerts-'));
    try {
      const unit: UnitTestFile = parse(readFileSync(unitTestFiles[0]!, 'utf8'));
      unit.rule_files = [resolve(RULES_FILE)];
      const firing = unit.tests.flatMap((t) => t.alert_rule_test ?? []).find((c) => (c.exp_alerts ?? []).length > 0)!;
      firing.exp_alerts![0]!.exp_annotations!['summary'] += ' (not what the rule says)';
      writeFileSync(join(dir, 'wrong.test.yaml'), stringify(unit));
      expect(() => promtool('test', 'rules', join(dir, 'wrong.test.yaml'))).toThrow(/not what the rule says/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('are actionable: summary, description, a runbook section, a severity and a for duration', () => {
    const runbook = readFileSync(RUNBOOK, 'utf8');
    const sections = [...runbook.matchAll(/^## (\S+)$/gm)].map((m) => m[1]!);
    expect(sections.sort()).toEqual(alerts.map((a) => a.alert).sort());
    expect(new Set(alerts.map((a) => a.alert)).size).toBe(alerts.length);
    for (const rule of alerts) {
      expect(rule.alert).toMatch(/^Tokenwarden[A-Z][A-Za-z]+$/);
      expect(Object.keys(rule.annotations ?? {}).sort(), rule.alert).toEqual(['description', 'runbook_url', 'summary']);
      expect(rule.annotations!['runbook_url'], rule.alert).toBe(`${RUNBOOK}#${rule.alert.toLowerCase()}`);
      expect(['critical', 'warning', 'info'], rule.alert).toContain(rule.labels?.['severity']);
      expect(durationSeconds(rule.for ?? '0s'), rule.alert).toBeGreaterThanOrEqual(300);
      expect(runbook, 'the runbook\'s table of alerts').toContain(`| [${rule.alert}](#${rule.alert.toLowerCase()}) | ${rule.labels!['severity']} | ${rule.for} |`);
    }
  });

  it('watch the Check latency well below Envoy ext_authz timeout', () => {
    const envoy = readFileSync('envoy/envoy.yaml', 'utf8');
    const extAuthz = envoy.slice(envoy.indexOf('name: envoy.filters.http.ext_authz\n'));
    const timeout = durationSeconds(/timeout: (\d+s)/.exec(extAuthz)![1]!);
    const rule = alerts.find((a) => a.alert === 'TokenwardenCheckLatencyHigh')!;
    const threshold = Number(/\) > ([\d.]+)\s*$/.exec(rule.expr)![1]);
    expect(threshold).toBeLessThanOrEqual(timeout / 2);
  });

  it('use only metrics and labels that src/telemetry/metrics.ts exports, with values the code writes', () => {
    const registry = createMetrics({ userLabel: true }).registry;
    const labelsOf = new Map<string, Set<string>>();
    for (const metric of registry.getMetricsAsArray()) {
      const { name, type, labelNames } = metric as unknown as { name: string; type: string; labelNames: string[] };
      labelsOf.set(name, new Set(labelNames));
      if (type === 'histogram') {
        labelsOf.set(`${name}_bucket`, new Set([...labelNames, 'le']));
        labelsOf.set(`${name}_sum`, new Set(labelNames));
        labelsOf.set(`${name}_count`, new Set(labelNames));
      }
    }
    const sourceText = readdirSync('src', { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts'))
      .map((f) => readFileSync(join('src', f), 'utf8'))
      .join('\n');
    const problems: string[] = [];
    for (const rule of alerts) {
      const used = new Set<string>();
      const selectors = [...rule.expr.matchAll(/\b(tokenwarden_[a-z0-9_]+)(?:\{([^}]*)\})?/g)];
      if (selectors.length === 0) problems.push(`${rule.alert} reads no tokenwarden metric`);
      for (const [, name, matchers] of selectors) {
        const labels = labelsOf.get(name!);
        if (labels === undefined) {
          problems.push(`${rule.alert}: ${name} is not a tokenwarden metric`);
          continue;
        }
        labels.forEach((l) => used.add(l));
        for (const [, label, op, value] of (matchers ?? '').matchAll(/([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)) {
          if (!labels.has(label!)) problems.push(`${rule.alert}: ${name} has no label ${label}`);
          else if (op === '=' && !sourceText.includes(`'${value}'`)) problems.push(`${rule.alert}: src never writes ${label}="${value}"`);
        }
      }
      for (const [, list] of rule.expr.matchAll(/\b(?:by|on)\s*\(([^)]*)\)/g)) {
        for (const label of list!.split(',').map((l) => l.trim())) {
          if (!TARGET_LABELS.has(label) && !used.has(label)) problems.push(`${rule.alert}: aggregates by ${label}, which its metrics do not have`);
        }
      }
    }
    expect(problems).toEqual([]);
  });
});

/** The series the alerts read that only admission writes: per-model decisions, and the per-user quota share. */
/** Every YAML document under deploy/ (manifests, kustomize sources, the monitoring files). */
function deployDocuments(dir = 'deploy'): Array<{ file: string; doc: Record<string, unknown> }> {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return deployDocuments(path);
    if (!/\.ya?ml$/.test(entry.name)) return [];
    return parseAllDocuments(readFileSync(path, 'utf8'))
      .map((d) => d.toJS() as Record<string, unknown> | null)
      .filter((doc): doc is Record<string, unknown> => doc !== null && typeof doc === 'object')
      .map((doc) => ({ file: path, doc }));
  });
}

describe("the Prometheus Operator's objects under deploy/", () => {
  it("match the operator's CRD schemas (test/helpers/prometheus-operator.ts): types, required fields, no unknown field", () => {
    const objects = deployDocuments().filter(({ doc }) => isOperatorObject(doc));
    expect(objects.map(({ file, doc }) => `${file}: ${doc['kind']}`).sort()).toEqual(
      expect.arrayContaining(['deploy/kustomize/base/podmonitor.yaml: PodMonitor', `${PROMETHEUS_RULE_FILE}: PrometheusRule`]),
    );
    expect(objects.flatMap(({ file, doc }) => operatorSchemaProblems(doc).map((p) => `${file}: ${p}`))).toEqual([]);
  });

  it('are refused when a rule has a field of the wrong type or a misspelt field (the check can fail)', () => {
    const object = parse(readFileSync(PROMETHEUS_RULE_FILE, 'utf8'));
    const rule = object.spec.groups[0].rules[0];
    rule.for = 300;
    rule.labels.severity = 2;
    rule.annotation = rule.annotations;
    delete rule.expr;
    expect(operatorSchemaProblems(object)).toEqual([
      "PrometheusRule/tokenwarden: data/spec/groups/0/rules/0 must have required property expr, data/spec/groups/0/rules/0/for must be string, data/spec/groups/0/rules/0/labels/severity must be string",
      'PrometheusRule/tokenwarden.spec.groups[0].rules[0].annotation: no such field',
    ]);
  });
});

describe('metrics behind the alerts', () => {
  const stores: MemoryStore[] = [];
  afterAll(async () => {
    for (const store of stores) await store.close();
  });

  function gatekeeper(yaml: string, clock: () => number = Date.now) {
    const config = parseLimitsYaml(`models: { m1: {}, m2: {} }\nidentity: { trustUserHeader: true }\n${yaml}`, 'test');
    const metrics = createMetrics({ userLabel: config.settings.metrics.userLabel });
    const store = new MemoryStore(clock);
    stores.push(store);
    const keeper = new Gatekeeper({
      config: () => config,
      engine: new QuotaEngine(store, () => config, clock),
      // Every prompt counts 100 tokens: the reservation is 100 plus max_tokens.
      counter: { count: async () => [100] },
      metrics,
      logger: createLogger('silent'),
      clock,
    });
    const ask = (user: string, model: string, maxTokens: number) =>
      keeper.decide(request(user, model, maxTokens)).then((v) => (v.kind === 'allow' ? 200 : v.status));
    return { metrics, ask };
  }

  function request(user: string, model: string, maxTokens: number): RequestView {
    return {
      method: 'POST',
      path: '/v1/chat/completions',
      headers: new Map([['x-user-id', user]]),
      body: JSON.stringify({ model, max_tokens: maxTokens, messages: [{ role: 'user', content: 'hi' }] }),
      bodyTruncated: false,
      filterMetadata: {},
    };
  }

  async function samples(metrics: ReturnType<typeof createMetrics>, name: string) {
    const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
    return (metric?.values ?? []).map((v) => ({ labels: v.labels, value: v.value }));
  }

  it('count allowed and 429 Checks per configured model, and nothing for unknown models', async () => {
    const { metrics, ask } = gatekeeper('defaults: { requestsPerMinute: 2 }');
    expect([await ask('alice', 'm1', 10), await ask('alice', 'm1', 10), await ask('alice', 'm1', 10), await ask('alice', 'm1', 10)]).toEqual([200, 200, 429, 429]);
    expect(await ask('bob', 'm2', 10)).toBe(200);
    expect(await ask('bob', 'no-such-model', 10)).toBe(404);
    expect(await samples(metrics, 'tokenwarden_model_decisions_total')).toEqual([
      { labels: { model: 'm1', result: 'allowed' }, value: 2 },
      // The second 429 is a remembered denial: still a 429 the client received.
      { labels: { model: 'm1', result: 'rate_limited' }, value: 2 },
      { labels: { model: 'm2', result: 'allowed' }, value: 1 },
    ]);
  });

  it('export each user’s share of their daily and monthly limits only with metrics.userLabel', async () => {
    const limits = 'defaults: { tokensPerMinute: 100000, tokensPerDay: 1000, tokensPerMonth: 10000 }';
    const labelled = gatekeeper(`${limits}\nmetrics: { userLabel: true }`);
    expect(await labelled.ask('alice', 'm1', 300)).toBe(200); // 400 of 1000 a day, of 10000 a month
    expect(await labelled.ask('alice', 'm1', 400)).toBe(200); // 900
    expect(await labelled.ask('alice', 'm1', 300)).toBe(429); // 1300 would not fit: the share stays
    expect(await samples(labelled.metrics, 'tokenwarden_quota_used_ratio')).toEqual([
      { labels: { user: 'alice', model: 'm1', window: 'tokensPerDay' }, value: 0.9 },
      { labels: { user: 'alice', model: 'm1', window: 'tokensPerMonth' }, value: 0.09 },
    ]);
    expect(await labelled.metrics.registry.metrics()).toContain('tokenwarden_quota_used_ratio{user="alice",model="m1",window="tokensPerDay"} 0.9');

    const unlabelled = gatekeeper(limits);
    expect(await unlabelled.ask('alice', 'm1', 300)).toBe(200);
    expect(await unlabelled.metrics.registry.metrics()).not.toContain('tokenwarden_quota_used_ratio');
  });

  it('drop a user’s share when its window resets, so nobody stays near quota into the next day', async () => {
    // A second before midnight UTC, with no monthly limit: the daily window resets a second from now.
    const midnight = Date.UTC(2026, 0, 2);
    const { metrics, ask } = gatekeeper('defaults: { tokensPerDay: 1000 }\nmetrics: { userLabel: true }', () => midnight - 1000);
    expect(await ask('alice', 'm1', 850)).toBe(200);
    expect(await samples(metrics, 'tokenwarden_quota_used_ratio')).toEqual([{ labels: { user: 'alice', model: 'm1', window: 'tokensPerDay' }, value: 0.95 }]);
    await new Promise((r) => setTimeout(r, 1200));
    expect(await samples(metrics, 'tokenwarden_quota_used_ratio')).toEqual([]);
  });
});
