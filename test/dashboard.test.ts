import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Counter, Gauge, Histogram } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { createMetrics } from '../src/telemetry/metrics.js';

const DASHBOARD_FILE = 'deploy/monitoring/grafana-dashboard.json';
const CONFIGMAP_FILE = 'deploy/monitoring/grafana-dashboard-configmap.yaml';

// The dashboard is untyped JSON: read with any.
const dashboardText = readFileSync(DASHBOARD_FILE, 'utf8');
const dashboard: any = JSON.parse(dashboardText);
const panels: any[] = dashboard.panels;
const dataPanels = panels.filter((p) => p.type !== 'row');
const variables: any[] = dashboard.templating.list;

// ── What /metrics exposes ──────────────────────────────────────────────────────────────────────────

/**
 * Labels Prometheus attaches at scrape time (a ServiceMonitor or PodMonitor adds namespace, pod,
 * container, service and endpoint; every scrape adds job and instance): on every series, whatever its metric.
 */
const TARGET_LABELS = ['job', 'instance', 'namespace', 'pod', 'container', 'service', 'endpoint'];

/** Every series name tokenwarden exposes (with the user label on), with the labels it carries. */
function exposedSeries(): Map<string, { family: string; labels: Set<string> }> {
  const series = new Map<string, { family: string; labels: Set<string> }>();
  for (const metric of createMetrics({ userLabel: true }).registry.getMetricsAsArray()) {
    const labelNames = (metric as unknown as { labelNames: readonly string[] }).labelNames;
    if (!Array.isArray(labelNames)) throw new Error(`prom-client no longer exposes labelNames on ${metric.name}`);
    const labels = new Set([...labelNames, ...TARGET_LABELS]);
    if (String(metric.type) === 'histogram') {
      series.set(`${metric.name}_bucket`, { family: metric.name, labels: new Set([...labels, 'le']) });
      series.set(`${metric.name}_sum`, { family: metric.name, labels });
      series.set(`${metric.name}_count`, { family: metric.name, labels });
    } else if (String(metric.type) === 'summary') {
      series.set(metric.name, { family: metric.name, labels: new Set([...labels, 'quantile']) });
      series.set(`${metric.name}_sum`, { family: metric.name, labels });
      series.set(`${metric.name}_count`, { family: metric.name, labels });
    } else {
      series.set(metric.name, { family: metric.name, labels });
    }
  }
  return series;
}
const SERIES = exposedSeries();

/**
 * Values tokenwarden gives the labels the dashboard selects on with "=" (src/admission/gatekeeper.ts,
 * src/envoy/authz.ts, src/ratelimit/service.ts): a selector asking for any other value would stay empty.
 */
const EMITTED_VALUES: Record<string, Record<string, string[]>> = {
  tokenwarden_decisions_total: {
    result: ['allowed', 'denied', 'abandoned', 'error'],
    reason: ['within_limits', 'uncharged', 'tokensPerMinute', 'unauthenticated', 'store_unavailable', 'caller_gone', 'internal'],
  },
  tokenwarden_ratelimit_decisions_total: { result: ['ok', 'over_limit'] },
  tokenwarden_ratelimit_hits_total: { stat: ['total_hits', 'within_limit', 'near_limit', 'over_limit', 'shadow_mode'] },
};

// ── A small PromQL reader: enough to know which metrics and labels an expression uses ─────────────

type Token = { kind: 'ident' | 'number' | 'string' | 'range' | 'op' | 'punct' | 'end'; text: string };

function lex(src: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const rules: Array<[Token['kind'], RegExp]> = [
    ['number', /^(?:0x[0-9a-fA-F]+|[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)/],
    ['ident', /^[a-zA-Z_:][a-zA-Z0-9_:]*/],
    ['string', /^"(?:[^"\\]|\\.)*"|^'(?:[^'\\]|\\.)*'|^`[^`]*`/],
    ['range', /^\[[^\]]*\]/],
    ['op', /^(?:==|!=|>=|<=|=~|!~|[-+*/%^<>=])/],
    ['punct', /^[(){},]/],
  ];
  outer: while (i < src.length) {
    const rest = src.slice(i);
    const space = /^\s+/.exec(rest);
    if (space) {
      i += space[0].length;
      continue;
    }
    for (const [kind, re] of rules) {
      const m = re.exec(rest);
      if (m) {
        tokens.push({ kind, text: m[0] });
        i += m[0].length;
        continue outer;
      }
    }
    throw new Error(`cannot read PromQL at "${rest.slice(0, 20)}"`);
  }
  tokens.push({ kind: 'end', text: '' });
  return tokens;
}

type Matcher = { label: string; op: string; value: string };
type Node =
  | { kind: 'number' }
  | { kind: 'string'; value: string }
  | { kind: 'selector'; metric: string; matchers: Matcher[]; range: boolean }
  | { kind: 'call'; fn: string; args: Node[] }
  | { kind: 'aggregate'; op: string; grouping?: { without: boolean; labels: string[] }; param?: Node; expr: Node }
  | { kind: 'binary'; op: string; lhs: Node; rhs: Node; matching?: { on: boolean; labels: string[]; group?: 'left' | 'right'; include: string[] } }
  | { kind: 'unary'; expr: Node }
  | { kind: 'subquery'; expr: Node };

const AGGREGATIONS = new Set(['sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile']);
const PARAMETRIC = new Set(['count_values', 'bottomk', 'topk', 'quantile']);
const BINARY_PRECEDENCE: Array<string[]> = [['or'], ['and', 'unless'], ['==', '!=', '<=', '<', '>=', '>'], ['+', '-'], ['*', '/', '%', 'atan2'], ['^']];

function parsePromQL(src: string): Node {
  const tokens = lex(src);
  let pos = 0;
  const peek = (offset = 0): Token => tokens[Math.min(pos + offset, tokens.length - 1)]!;
  const next = (): Token => tokens[pos++]!;
  const expect_ = (text: string): void => {
    const t = next();
    if (t.text !== text) throw new Error(`expected "${text}" but found "${t.text}" in ${src}`);
  };
  const labelList = (): string[] => {
    expect_('(');
    const labels: string[] = [];
    while (peek().text !== ')') {
      const t = next();
      if (t.kind !== 'ident') throw new Error(`expected a label name, found "${t.text}"`);
      labels.push(t.text);
      if (peek().text === ',') next();
    }
    expect_(')');
    return labels;
  };
  const matchers = (): Matcher[] => {
    expect_('{');
    const list: Matcher[] = [];
    while (peek().text !== '}') {
      const label = next();
      const op = next();
      const value = next();
      if (label.kind !== 'ident' || !['=', '!=', '=~', '!~'].includes(op.text) || value.kind !== 'string') {
        throw new Error(`bad label matcher "${label.text}${op.text}${value.text}"`);
      }
      list.push({ label: label.text, op: op.text, value: value.text.slice(1, -1) });
      if (peek().text === ',') next();
    }
    expect_('}');
    return list;
  };
  const binaryOp = (level: number): boolean => {
    const t = peek();
    return (t.kind === 'op' || t.kind === 'ident') && BINARY_PRECEDENCE[level]!.includes(t.text);
  };
  const parseBinary = (level: number): Node => {
    if (level === BINARY_PRECEDENCE.length) return parseUnary();
    let lhs = parseBinary(level + 1);
    while (binaryOp(level)) {
      const op = next().text;
      if (peek().text === 'bool') next();
      let matching: Extract<Node, { kind: 'binary' }>['matching'];
      if (peek().text === 'on' || peek().text === 'ignoring') {
        const on = next().text === 'on';
        matching = { on, labels: labelList(), include: [] };
        if (peek().text === 'group_left' || peek().text === 'group_right') {
          matching.group = next().text === 'group_left' ? 'left' : 'right';
          if (peek().text === '(') matching.include = labelList();
        }
      }
      // ^ is right-associative; the others associate to the left.
      const rhs = op === '^' ? parseBinary(level) : parseBinary(level + 1);
      lhs = matching ? { kind: 'binary', op, lhs, rhs, matching } : { kind: 'binary', op, lhs, rhs };
    }
    return lhs;
  };
  const parseUnary = (): Node => {
    if (peek().text === '-' || peek().text === '+') {
      next();
      return { kind: 'unary', expr: parseUnary() };
    }
    return parsePostfix(parsePrimary());
  };
  const parsePostfix = (node: Node): Node => {
    if (peek().kind === 'range') {
      const range = next().text;
      if (node.kind === 'selector' && !range.includes(':')) return { ...node, range: true };
      return { kind: 'subquery', expr: node };
    }
    if (peek().text === 'offset' || peek().text === '@') throw new Error(`offset and @ are not read by this checker: ${src}`);
    return node;
  };
  const parsePrimary = (): Node => {
    const t = next();
    if (t.kind === 'number') return { kind: 'number' };
    if (t.kind === 'string') return { kind: 'string', value: t.text.slice(1, -1) };
    if (t.text === '(') {
      const inner = parseBinary(0);
      expect_(')');
      return inner;
    }
    if (t.text === '{') throw new Error(`a selector without a metric name: ${src}`);
    if (t.kind !== 'ident') throw new Error(`unexpected "${t.text}" in ${src}`);
    if (['Inf', 'NaN', 'inf', 'nan'].includes(t.text)) return { kind: 'number' };
    if (AGGREGATIONS.has(t.text) && (peek().text === '(' || peek().text === 'by' || peek().text === 'without')) {
      let grouping: { without: boolean; labels: string[] } | undefined;
      if (peek().text === 'by' || peek().text === 'without') grouping = { without: next().text === 'without', labels: labelList() };
      expect_('(');
      const param = PARAMETRIC.has(t.text) ? parseBinary(0) : undefined;
      if (param) expect_(',');
      const expr = parseBinary(0);
      expect_(')');
      if (!grouping && (peek().text === 'by' || peek().text === 'without')) grouping = { without: next().text === 'without', labels: labelList() };
      const node: Node = { kind: 'aggregate', op: t.text, expr };
      if (grouping) node.grouping = grouping;
      if (param) node.param = param;
      return node;
    }
    if (peek().text === '(') {
      next();
      const args: Node[] = [];
      while (peek().text !== ')') {
        args.push(parseBinary(0));
        if (peek().text === ',') next();
      }
      expect_(')');
      return { kind: 'call', fn: t.text, args };
    }
    return { kind: 'selector', metric: t.text, matchers: peek().text === '{' ? matchers() : [], range: false };
  };
  const tree = parseBinary(0);
  if (peek().kind !== 'end') throw new Error(`unread PromQL after "${peek().text}" in ${src}`);
  return tree;
}

type Value = { type: 'scalar' | 'vector' | 'matrix' | 'string'; labels: Set<string> };

/** Functions whose result keeps the labels of their (one) vector or matrix argument. */
const RANGE_FUNCTIONS = new Set(['rate', 'irate', 'increase', 'delta', 'idelta', 'deriv', 'changes', 'resets', 'avg_over_time', 'min_over_time', 'max_over_time', 'sum_over_time', 'count_over_time', 'last_over_time', 'quantile_over_time', 'stddev_over_time', 'stdvar_over_time', 'present_over_time', 'predict_linear', 'holt_winters']);
const VECTOR_FUNCTIONS = new Set(['abs', 'ceil', 'floor', 'round', 'clamp', 'clamp_min', 'clamp_max', 'sqrt', 'exp', 'ln', 'log2', 'log10', 'sgn', 'timestamp', 'sort', 'sort_desc']);

/**
 * The metrics and labels an expression uses, checked against what tokenwarden exposes: every selector
 * names an exposed series and matches only its labels; every by/without/on/ignoring label exists on
 * what it groups; both sides of a one-to-one operation carry the same labels. Returns the problems and
 * the labels of the result (what a legend may show).
 */
function checkExpression(src: string): { problems: string[]; labels: Set<string>; metrics: Set<string> } {
  const problems: string[] = [];
  const metrics = new Set<string>();
  const sameSet = (a: Set<string>, b: Set<string>) => a.size === b.size && [...a].every((l) => b.has(l));
  const show = (s: Set<string>) => `{${[...s].sort().join(', ')}}`;
  const infer = (node: Node): Value => {
    switch (node.kind) {
      case 'number':
        return { type: 'scalar', labels: new Set() };
      case 'string':
        return { type: 'string', labels: new Set() };
      case 'unary':
      case 'subquery': {
        const inner = infer(node.expr);
        return node.kind === 'subquery' ? { type: 'matrix', labels: inner.labels } : inner;
      }
      case 'selector': {
        metrics.add(node.metric);
        const series = SERIES.get(node.metric);
        if (!series) {
          problems.push(`${node.metric} is not a series tokenwarden exposes`);
          return { type: node.range ? 'matrix' : 'vector', labels: new Set(TARGET_LABELS) };
        }
        for (const m of node.matchers) {
          if (!series.labels.has(m.label)) problems.push(`${node.metric} has no label "${m.label}" (matcher ${m.label}${m.op}"${m.value}")`);
          else if (m.op === '=' && !TARGET_LABELS.includes(m.label)) {
            const known = EMITTED_VALUES[node.metric]?.[m.label];
            if (!known) problems.push(`${m.label}="${m.value}" on ${node.metric}: add the values tokenwarden emits for it to EMITTED_VALUES`);
            else if (!known.includes(m.value)) problems.push(`${node.metric} never has ${m.label}="${m.value}" (it has ${known.join(', ')})`);
          }
        }
        return { type: node.range ? 'matrix' : 'vector', labels: new Set(series.labels) };
      }
      case 'call': {
        const args = node.args.map(infer);
        const arg = (i: number, type: Value['type']): Value => {
          const a = args[i];
          if (!a || a.type !== type) problems.push(`${node.fn}() wants a ${type} as argument ${i + 1}`);
          return a ?? { type, labels: new Set() };
        };
        if (RANGE_FUNCTIONS.has(node.fn)) return { type: 'vector', labels: arg(node.fn === 'quantile_over_time' ? 1 : 0, 'matrix').labels };
        if (VECTOR_FUNCTIONS.has(node.fn)) return { type: 'vector', labels: arg(0, 'vector').labels };
        if (node.fn === 'histogram_quantile') {
          arg(0, 'scalar');
          const input = arg(1, 'vector');
          if (!input.labels.has('le')) problems.push(`histogram_quantile() over ${show(input.labels)}, which has no "le" label`);
          return { type: 'vector', labels: new Set([...input.labels].filter((l) => l !== 'le')) };
        }
        if (node.fn === 'time') return { type: 'scalar', labels: new Set() };
        if (node.fn === 'vector') return arg(0, 'scalar'), { type: 'vector', labels: new Set() };
        if (node.fn === 'scalar') return arg(0, 'vector'), { type: 'scalar', labels: new Set() };
        if (node.fn === 'absent') return arg(0, 'vector'), { type: 'vector', labels: new Set() };
        problems.push(`function ${node.fn}() is not known to this checker`);
        return { type: 'vector', labels: new Set() };
      }
      case 'aggregate': {
        const input = infer(node.expr);
        if (input.type !== 'vector') problems.push(`${node.op}() over a ${input.type}`);
        if (node.param && infer(node.param).type !== (node.op === 'count_values' ? 'string' : 'scalar')) problems.push(`${node.op}() has a parameter of the wrong type`);
        const grouping = node.grouping?.labels ?? [];
        for (const l of grouping) {
          if (!input.labels.has(l)) problems.push(`${node.op} ${node.grouping!.without ? 'without' : 'by'} (${l}): "${l}" is not on ${show(input.labels)}`);
        }
        if (node.op === 'topk' || node.op === 'bottomk') return { type: 'vector', labels: input.labels };
        const kept = !node.grouping ? new Set<string>() : node.grouping.without ? new Set([...input.labels].filter((l) => !grouping.includes(l))) : new Set(grouping);
        if (node.op === 'count_values' && node.param?.kind === 'string') kept.add(node.param.value);
        return { type: 'vector', labels: kept };
      }
      case 'binary': {
        const lhs = infer(node.lhs);
        const rhs = infer(node.rhs);
        const setOp = ['and', 'or', 'unless'].includes(node.op);
        if (lhs.type === 'scalar' && rhs.type === 'scalar') {
          if (setOp) problems.push(`"${node.op}" between scalars`);
          return { type: 'scalar', labels: new Set() };
        }
        if (lhs.type !== 'vector' && lhs.type !== 'scalar') problems.push(`"${node.op}" with a ${lhs.type} on the left`);
        if (rhs.type !== 'vector' && rhs.type !== 'scalar') problems.push(`"${node.op}" with a ${rhs.type} on the right`);
        if (lhs.type === 'scalar' || rhs.type === 'scalar') {
          if (setOp) problems.push(`"${node.op}" with a scalar`);
          return { type: 'vector', labels: lhs.type === 'scalar' ? rhs.labels : lhs.labels };
        }
        const m = node.matching;
        for (const l of m?.labels ?? []) {
          const sides = m?.on ? [lhs, rhs] : [lhs.labels.has(l) ? lhs : rhs];
          if (!sides.every((s) => s.labels.has(l))) problems.push(`${m?.on ? 'on' : 'ignoring'} (${l}) in "${node.op}": "${l}" is not on ${show(lhs.labels)} ${node.op} ${show(rhs.labels)}`);
        }
        const oneSide = m?.group === 'left' ? rhs : lhs;
        for (const l of m?.include ?? []) {
          if (!oneSide.labels.has(l)) problems.push(`group_${m!.group} (${l}) in "${node.op}": "${l}" is not on ${show(oneSide.labels)}`);
        }
        if (setOp) return { type: 'vector', labels: node.op === 'or' ? new Set([...lhs.labels, ...rhs.labels]) : lhs.labels };
        if (m?.on) {
          if (m.group === 'left') return { type: 'vector', labels: new Set([...lhs.labels, ...m.include]) };
          if (m.group === 'right') return { type: 'vector', labels: new Set([...rhs.labels, ...m.include]) };
          return { type: 'vector', labels: new Set(m.labels) };
        }
        // Without on(): series match on all their labels but the ignored ones, so both sides must carry the same.
        const ignored = new Set(m?.labels ?? []);
        const left = new Set([...lhs.labels].filter((l) => !ignored.has(l)));
        const right = new Set([...rhs.labels].filter((l) => !ignored.has(l)));
        if (!sameSet(left, right)) problems.push(`"${node.op}" matches ${show(lhs.labels)} with ${show(rhs.labels)}: no series would match one-to-one`);
        if (m?.group === 'right') return { type: 'vector', labels: new Set([...rhs.labels, ...m.include]) };
        return { type: 'vector', labels: m?.group === 'left' ? new Set([...lhs.labels, ...m.include]) : left };
      }
    }
  };
  let result: Value = { type: 'vector', labels: new Set() };
  try {
    result = infer(parsePromQL(src));
    if (result.type !== 'vector' && result.type !== 'scalar') problems.push(`the expression is a ${result.type}, not something Grafana can draw`);
  } catch (err) {
    problems.push((err as Error).message);
  }
  return { problems, labels: result.labels, metrics };
}

// ── Grafana variables, and the expressions as Prometheus will see them ─────────────────────────────

const BUILTIN_INTERVALS: Record<string, string> = { __rate_interval: '5m', __interval: '1m', __range: '1h' };
const VARIABLE_REF = /\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]/g;
const variableNames = new Set(variables.map((v) => v.name));

/** The expression with Grafana's variables replaced: durations for the interval macros, ".*" (All) for dashboard variables. */
function substitute(expr: string): string {
  return expr.replace(VARIABLE_REF, (whole, a?: string, b?: string, c?: string) => {
    const name = (a ?? b ?? c)!;
    if (name in BUILTIN_INTERVALS) return BUILTIN_INTERVALS[name]!;
    if (variableNames.has(name) && name !== 'datasource') return '.*';
    throw new Error(`unknown Grafana variable ${whole} in ${expr}`);
  });
}

type Query = { panel: string; refId: string; legendFormat?: string; expr: string; promql: string; variableProblem?: string; id: string };
const queries: Query[] = dataPanels.flatMap((p) =>
  (p.targets ?? []).map((t: any) => {
    const query: Query = { panel: `${p.id} "${p.title}"`, refId: t.refId, legendFormat: t.legendFormat, expr: t.expr, promql: t.expr, id: `panel_${p.id}_${t.refId}` };
    try {
      query.promql = substitute(t.expr);
    } catch (err) {
      query.variableProblem = (err as Error).message;
    }
    return query;
  }),
);

const scratch = mkdtempSync(join(tmpdir(), 'tw-dashboard-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Runs `promtool check rules` on one recording rule per expression; returns its exit status and output. */
function promtoolCheck(rules: Array<{ record: string; expr: string }>): { status: number | null; output: string } {
  const file = join(scratch, `rules-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, stringify({ groups: [{ name: 'grafana-dashboard', rules }] }));
  const run = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
  if (run.error) throw new Error(`promtool is needed (Debian's prometheus package; make test installs it): ${run.error.message}`);
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

/**
 * Series as one tokenwarden replica would expose them after some traffic: its own registry (user label
 * on), every labelled metric given the values of EMITTED_VALUES (else one value), counters and
 * histograms growing steadily, with the target labels a PodMonitor adds. As promtool input series.
 */
async function tokenwardenShapedSeries(): Promise<Array<{ series: string; values: string }>> {
  const { registry } = createMetrics({ userLabel: true });
  for (const metric of registry.getMetricsAsArray()) {
    const labelNames = (metric as unknown as { labelNames: readonly string[] }).labelNames;
    let combos: Array<Record<string, string>> = [{}];
    for (const label of labelNames) {
      const values = EMITTED_VALUES[metric.name]?.[label] ?? ['some'];
      combos = combos.flatMap((c) => values.map((v) => ({ ...c, [label]: v })));
    }
    combos.forEach((labels, i) => {
      if (metric instanceof Counter) metric.inc(labels, i + 1);
      else if (metric instanceof Gauge) metric.set(labels, 1);
      else if (metric instanceof Histogram) for (const v of [-2000, -100, 0.0004, 0.003, 0.02, 0.15, 0.7, 50, 500, 5000]) metric.observe(labels, v);
      else throw new Error(`no synthetic data for ${metric.name}`);
    });
  }
  const target = { job: 'tokenwarden', namespace: 'llm', instance: '10.0.0.7:8080', pod: 'tokenwarden-0' };
  return (await registry.getMetricsAsJSON()).flatMap((family) =>
    (family.values as Array<{ value: number; metricName?: string; labels: Record<string, string | number> }>).map((v) => {
      const labels = Object.entries({ ...v.labels, ...target }).map(([k, val]) => `${k}="${String(val)}"`);
      const grows = String(family.type) !== 'gauge';
      return { series: `${v.metricName ?? family.name}{${labels.join(', ')}}`, values: grows ? `0+${v.value}x40` : `${v.value}x40` };
    }),
  );
}

/**
 * Evaluates every expression with `promtool test rules` on those series: each becomes an alert
 * absent(<expr>), which must not fire 30 minutes in. Returns promtool's exit status and output.
 */
function promtoolEvaluate(exprs: Array<{ name: string; expr: string }>, input: Array<{ series: string; values: string }>): { status: number | null; output: string } {
  const id = Math.random().toString(36).slice(2);
  const rulesFile = join(scratch, `eval-rules-${id}.yaml`);
  const testFile = join(scratch, `eval-test-${id}.yaml`);
  writeFileSync(rulesFile, stringify({ groups: [{ name: 'grafana-dashboard-data', rules: exprs.map((e) => ({ alert: e.name, expr: `absent(${e.expr})` })) }] }));
  writeFileSync(
    testFile,
    stringify({
      rule_files: [rulesFile],
      evaluation_interval: '1m',
      tests: [{ interval: '1m', input_series: input, alert_rule_test: exprs.map((e) => ({ eval_time: '30m', alertname: e.name, exp_alerts: [] })) }],
    }),
  );
  const run = spawnSync('promtool', ['test', 'rules', testFile], { encoding: 'utf8' });
  if (run.error) throw new Error(`promtool is needed (Debian's prometheus package; make test installs it): ${run.error.message}`);
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

// ── The tests ──────────────────────────────────────────────────────────────────────────────────────

describe(DASHBOARD_FILE, () => {
  it('is a dashboard Grafana can import and provision', () => {
    expect(dashboard).toMatchObject({ uid: 'tokenwarden', title: expect.any(String), editable: expect.any(Boolean), time: { from: expect.any(String), to: 'now' } });
    expect(dashboard.id).toBeNull();
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.schemaVersion).toBeLessThanOrEqual(41);
    expect(Array.isArray(panels) && panels.length).toBeGreaterThan(10);
    expect(dataPanels.every((p) => ['timeseries', 'stat', 'table', 'bargauge', 'gauge', 'heatmap', 'state-timeline'].includes(p.type))).toBe(true);
  });

  it('gives every panel a unique id and a place on the 24-column grid, with no two panels overlapping', () => {
    const ids = panels.map((p) => p.id);
    expect(ids.every((id) => Number.isInteger(id) && id > 0)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of panels) {
      const g = p.gridPos;
      expect(g, `panel ${p.id} gridPos`).toMatchObject({ h: expect.any(Number), w: expect.any(Number), x: expect.any(Number), y: expect.any(Number) });
      expect(g.w > 0 && g.h > 0 && g.x >= 0 && g.y >= 0 && g.x + g.w <= 24, `panel ${p.id} ${JSON.stringify(g)}`).toBe(true);
    }
    const overlaps = panels.flatMap((a, i) =>
      panels.slice(i + 1).flatMap((b) => {
        const [ga, gb] = [a.gridPos, b.gridPos];
        const apart = ga.x + ga.w <= gb.x || gb.x + gb.w <= ga.x || ga.y + ga.h <= gb.y || gb.y + gb.h <= ga.y;
        return apart ? [] : [`${a.id} and ${b.id}`];
      }),
    );
    expect(overlaps).toEqual([]);
  });

  it('queries the ${datasource} variable, a Prometheus data-source variable, from every panel and target', () => {
    expect(variables.find((v) => v.name === 'datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    const ds = { type: 'prometheus', uid: '${datasource}' };
    for (const p of dataPanels) {
      expect(p.datasource, `panel ${p.id}`).toEqual(ds);
      for (const t of p.targets) expect(t.datasource, `panel ${p.id} target ${t.refId}`).toEqual(ds);
    }
    for (const v of variables.filter((v) => v.type === 'query')) expect(v.datasource, `variable ${v.name}`).toEqual(ds);
  });

  it('says on every panel what to look for, and gives it at least one query with its own refId', () => {
    for (const p of dataPanels) {
      expect(typeof p.title === 'string' && p.title.length > 0, `panel ${p.id} title`).toBe(true);
      expect(typeof p.description === 'string' && p.description.length >= 60, `panel ${p.id} "${p.title}" description`).toBe(true);
      expect(p.targets.length, `panel ${p.id} targets`).toBeGreaterThan(0);
      const refIds = p.targets.map((t: any) => t.refId);
      expect(new Set(refIds).size, `panel ${p.id} refIds`).toBe(refIds.length);
      for (const t of p.targets) expect(typeof t.expr === 'string' && t.expr.trim().length > 0, `panel ${p.id} target ${t.refId}`).toBe(true);
    }
  });

  it('has job and namespace variables and a model variable from label_values, each naming an exposed series and label', () => {
    const byName = new Map(variables.map((v) => [v.name, v]));
    for (const name of ['job', 'namespace', 'model']) {
      const v = byName.get(name);
      expect(v, name).toMatchObject({ type: 'query', includeAll: true, multi: true, allValue: '.*' });
      const query: string = typeof v.query === 'string' ? v.query : v.query.query;
      expect(v.definition).toBe(query);
      const m = /^label_values\((.+),\s*(\w+)\)$/.exec(query);
      expect(m, `${name}: ${query}`).not.toBeNull();
      expect(m![2]).toBe(name);
      const selector = parsePromQL(substitute(m![1]!));
      expect(selector.kind).toBe('selector');
      const { problems } = checkExpression(substitute(m![1]!));
      expect(problems, query).toEqual([]);
      expect(SERIES.get((selector as { metric: string }).metric)!.labels.has(name), query).toBe(true);
    }
  });

  it('draws every metric the issue asks for', () => {
    const used = new Set(queries.flatMap((q) => [...checkExpression(q.promql).metrics]));
    const wanted = [
      'tokenwarden_decisions_total',
      'tokenwarden_tokens_charged_total',
      'tokenwarden_check_duration_seconds_bucket',
      'tokenwarden_reservation_error_tokens_bucket',
      'tokenwarden_settlements_total',
      'tokenwarden_store_errors_total',
      'tokenwarden_accesslog_streams',
      'tokenwarden_accesslog_entries_total',
      'tokenwarden_config_generation',
      'tokenwarden_config_last_apply_timestamp_seconds',
      'tokenwarden_configmap_invalid',
      'tokenwarden_kube_objects_rejected',
      'tokenwarden_ratelimit_config_invalid',
      'tokenwarden_leader',
      'tokenwarden_shadow_denials_total',
      'tokenwarden_ratelimit_decisions_total',
      'tokenwarden_ratelimit_hits_total',
      'tokenwarden_tokenize_duration_seconds_bucket',
    ];
    expect(wanted.filter((m) => !used.has(m))).toEqual([]);
    // Tokens by user: a table of the top users, grouped by the user label.
    expect(queries.some((q) => /topk\(\s*\d+,\s*sum by \([^)]*\buser\b[^)]*\) \(increase\(tokenwarden_tokens_charged_total\{/.test(q.expr))).toBe(true);
    expect(dataPanels.find((p) => p.targets.some((t: any) => /\buser\b/.test(t.expr)))?.type).toBe('table');
    // Check latency at the three quantiles.
    for (const q of ['0.5', '0.9', '0.99']) {
      expect(queries.some((x) => x.expr.startsWith(`histogram_quantile(${q}, sum by (le) (rate(tokenwarden_check_duration_seconds_bucket{`)), q).toBe(true);
    }
  });

  describe.each(queries)('panel $panel, query $refId', (q) => {
    it('uses only the dashboard\'s variables and Grafana\'s interval macros', () => {
      expect(q.variableProblem).toBeUndefined();
    });

    it('uses only series tokenwarden exposes, and only their labels', () => {
      expect(checkExpression(q.promql).problems, q.expr).toEqual([]);
    });

    it('shows in its legend only labels the result keeps', () => {
      const { labels } = checkExpression(q.promql);
      const legendLabels = [...(q.legendFormat ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]!);
      expect(legendLabels.filter((l) => !labels.has(l)), `${q.legendFormat} for ${q.expr}`).toEqual([]);
    });

    it('filters every selector by $job and $namespace, and by $model where the metric has a model label', () => {
      const selectors = [...q.expr.matchAll(/\b(tokenwarden_\w+)\{([^}]*)\}/g)];
      const bare = [...q.expr.matchAll(/\btokenwarden_\w+\b(?![{\w])/g)].map((m) => m[0]);
      expect(bare, q.expr).toEqual([]);
      for (const [, metric, body] of selectors) {
        expect(body, `${metric} in ${q.expr}`).toContain('job=~"$job"');
        expect(body, `${metric} in ${q.expr}`).toContain('namespace=~"$namespace"');
        if (SERIES.get(metric!)?.labels.has('model')) expect(body, `${metric} in ${q.expr}`).toContain('model=~"$model"');
      }
    });
  });

  it('parses as PromQL: promtool check rules accepts every expression as a recording rule', () => {
    expect(queries.length).toBeGreaterThan(20);
    const { status, output } = promtoolCheck(queries.map((q) => ({ record: `grafana_dashboard:${q.id}`, expr: q.promql })));
    expect(status, output).toBe(0);
    expect(output).toContain(`SUCCESS: ${queries.length} rules found`);
  });

  it('draws data from every query on series shaped like tokenwarden\'s /metrics (promtool test rules)', async () => {
    const input = await tokenwardenShapedSeries();
    const { status, output } = promtoolEvaluate(queries.map((q) => ({ name: `${q.id}_empty`, expr: q.promql })), input);
    expect(status, output).toBe(0);
    expect(output).toMatch(/SUCCESS/);
  });
});

describe('the checks themselves', () => {
  it('promtool refuses an expression that does not parse, and the variables Prometheus would never see', () => {
    expect(promtoolCheck([{ record: 'r:ok', expr: 'sum(rate(tokenwarden_decisions_total[5m]))' }]).status).toBe(0);
    expect(promtoolCheck([{ record: 'r:bad', expr: 'sum(rate(tokenwarden_decisions_total[5m])' }]).status).not.toBe(0);
    expect(promtoolCheck([{ record: 'r:bad', expr: 'rate(tokenwarden_decisions_total[$__rate_interval])' }]).status).not.toBe(0);
    expect(substitute('rate(x{model=~"$model"}[$__rate_interval])')).toBe('rate(x{model=~".*"}[5m])');
    expect(() => substitute('rate(x{user=~"$user"}[5m])')).toThrow(/unknown Grafana variable/);
  });

  it('promtool test rules notices an expression that selects nothing', async () => {
    const input = await tokenwardenShapedSeries();
    const ok = 'sum(rate(tokenwarden_decisions_total{result="denied"}[5m]))';
    expect(promtoolEvaluate([{ name: 'ok', expr: ok }], input).status).toBe(0);
    expect(promtoolEvaluate([{ name: 'nothing', expr: 'sum(rate(tokenwarden_decisions_total{result="refused"}[5m]))' }], input).status).not.toBe(0);
    expect(promtoolEvaluate([{ name: 'nothing', expr: 'sum by (user) (rate(tokenwarden_tokens_charged_total{job="other"}[5m]))' }], input).status).not.toBe(0);
  });

  it.each([
    ['an unknown metric', 'sum(rate(tokenwarden_denials_total[5m]))', /not a series/],
    ['a histogram suffix on a counter', 'sum(rate(tokenwarden_decisions_total_bucket[5m]))', /not a series/],
    ['a histogram without its suffix', 'histogram_quantile(0.9, sum by (le) (rate(tokenwarden_check_duration_seconds[5m])))', /not a series/],
    ['a matcher on a label the metric lacks', 'sum(rate(tokenwarden_decisions_total{model="m"}[5m]))', /no label "model"/],
    ['by() on a label the metric lacks', 'sum by (model) (rate(tokenwarden_decisions_total[5m]))', /by \(model\)/],
    ['a quantile over buckets summed without le', 'histogram_quantile(0.9, sum(rate(tokenwarden_check_duration_seconds_bucket[5m])))', /no "le" label/],
    ['by() on a label an inner sum dropped', 'sum by (user) (sum by (model) (rate(tokenwarden_tokens_charged_total[5m])))', /by \(user\)/],
    ['sides that cannot match', 'sum by (model) (rate(tokenwarden_settlements_total[5m])) / sum by (rule) (rate(tokenwarden_settlements_total[5m]))', /no series would match/],
    ['a label value tokenwarden never emits', 'sum(rate(tokenwarden_decisions_total{result="deny"}[5m]))', /never has result="deny"/],
    ['an equality matcher on a label of unknown values', 'sum(rate(tokenwarden_settlements_total{rule="usage"}[5m]))', /EMITTED_VALUES/],
    ['group_left taking a label the one side lacks', 'sum by (result) (rate(tokenwarden_decisions_total[5m])) / ignoring(result) group_left (model) sum(rate(tokenwarden_decisions_total[5m]))', /group_left \(model\)/],
    ['rate over an instant vector', 'rate(tokenwarden_decisions_total)', /wants a matrix/],
    ['a range vector as the result', 'tokenwarden_leader[5m]', /is a matrix/],
  ])('the metric and label check refuses %s', (_name, expr, problem) => {
    expect(checkExpression(expr).problems.join('; ')).toMatch(problem);
  });

  it('the metric and label check knows the user label and the histogram series', () => {
    expect(checkExpression('topk(5, sum by (user, model) (increase(tokenwarden_tokens_charged_total{job=~".*"}[1h])))').problems).toEqual([]);
    expect(checkExpression('sum by (model) (rate(tokenwarden_reservation_error_tokens_sum[5m])) / sum by (model) (rate(tokenwarden_reservation_error_tokens_count[5m]))').problems).toEqual([]);
    expect([...checkExpression('sum by (result) (rate(tokenwarden_decisions_total[5m])) / ignoring(result) group_left sum(rate(tokenwarden_decisions_total[5m]))').labels]).toEqual(['result']);
  });
});

describe(CONFIGMAP_FILE, () => {
  const configMap = parse(readFileSync(CONFIGMAP_FILE, 'utf8'));

  it('is a valid ConfigMap with the Grafana sidecar label', () => {
    expect(() => new ConfigMap(configMap).validate()).not.toThrow();
    expect(configMap).toMatchObject({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: expect.any(String), labels: { grafana_dashboard: '1' } } });
  });

  it('embeds the dashboard file byte for byte, under one .json key', () => {
    const keys = Object.keys(configMap.data ?? {});
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatch(/\.json$/);
    const embedded: string = configMap.data[keys[0]!];
    expect(JSON.parse(embedded)).toEqual(dashboard);
    expect(embedded).toBe(dashboardText);
  });

  it('fits in the last-applied-configuration annotation kubectl apply writes (256 KiB)', () => {
    expect(Buffer.byteLength(JSON.stringify(configMap))).toBeLessThan(256 * 1024);
  });
});
