// envoyproxy/ratelimit's YAML configuration and its descriptor matching (GetLimit), as a pure module.
// References are to envoyproxy/ratelimit at f2fb157 (src/config/config_impl.go unless another file is named).
import { parseDocument, visit } from 'yaml';

/** The unit names upstream accepts: envoy's RateLimitResponse.RateLimit.Unit values other than UNKNOWN. */
export type RateLimitUnit = 'second' | 'minute' | 'hour' | 'day' | 'week' | 'month' | 'year';

const UNIT_SECONDS: ReadonlyMap<RateLimitUnit, number> = new Map<RateLimitUnit, number>([
  ['second', 1], ['minute', 60], ['hour', 3_600], ['day', 86_400], ['week', 604_800], ['month', 2_592_000], ['year', 31_536_000],
]);

// Upstream looks up Go's strings.ToUpper(unit) (config_impl.go:268-269). JS toUpperCase differs only by expanding
// characters such as ß or ﬁ into pairs (SS, FI) found in no unit name, so `unit.toUpperCase()` agrees.
const UNIT_BY_NAME: ReadonlyMap<string, RateLimitUnit> = new Map([...UNIT_SECONDS.keys()].map((u) => [u.toUpperCase(), u]));

/**
 * Seconds in one window of `unit` (upstream `UnitToDivider`, src/utils/utilities.go:20-39). Upstream's windows are
 * fixed and aligned to the Unix epoch: the window holding `now` starts at `now - now % unitSeconds(unit)`
 * (src/limiter/cache_key.go:81-82) and resets `unitSeconds - now % unitSeconds` later (utilities.go:41-45).
 * MONTH is a fixed 30 days (2,592,000 s) and YEAR a fixed 365 days (31,536,000 s), counted from
 * 1970-01-01T00:00:00Z, so neither follows the calendar (a "month" window can start on any day of a month), and
 * WEEK windows start on Thursdays at 00:00 UTC (the epoch was a Thursday).
 */
export function unitSeconds(unit: RateLimitUnit): number {
  const seconds = UNIT_SECONDS.get(unit);
  if (seconds === undefined) throw new RangeError(`unknown rate limit unit '${String(unit)}'`);
  return seconds;
}

export interface RateLimitRule {
  /** Unique per configured rule (JSON of domain and the key or key_value of each level); per-request variants keep it. */
  readonly stableId: string;
  /** Upstream's FullKey / Stats.Key, e.g. `domain.key_value.key2`; per request with detailed_metric / value_to_metric. */
  readonly statsKey: string;
  /** The configured rule's own key (never per request): a metric label of bounded cardinality. */
  readonly ruleKey: string;
  /** Undefined only when `unlimited` (upstream then holds UNKNOWN). */
  readonly unit: RateLimitUnit | undefined;
  readonly requestsPerUnit: number;
  readonly unlimited: boolean;
  readonly shadowMode: boolean;
  readonly quotaMode: boolean;
  readonly name: string | undefined;
  readonly replaces: readonly string[];
  readonly detailedMetric: boolean;
  /** Per request entry: the wildcard value (e.g. `files/*`) that replaces the request's value in the counter key, where share_threshold applies. */
  readonly shareThresholdValues: readonly (string | undefined)[];
}

export interface DescriptorEntry { readonly key: string; readonly value: string }

/** A limit Envoy sent inside the descriptor (`RateLimitDescriptor.limit`), which upstream uses instead of the config. */
export interface LimitOverride { readonly requestsPerUnit: number; readonly unit: RateLimitUnit }

/** `path` is like `descriptors[2].rate_limit.unit` ('' for the file as a whole); `reason` uses upstream's wording where it has one. */
export class RateLimitConfigError extends Error {
  override readonly name = 'RateLimitConfigError';
  constructor(readonly file: string, readonly path: string, readonly reason: string) {
    super(path === '' ? `${file}: ${reason}` : `${file}: ${path}: ${reason}`);
  }
}

interface Node {
  readonly children: Map<string, Node>;
  /** Children whose key_value contains `*`, in config order: the first that matches wins (config_impl.go:504-512). */
  readonly wildcards: { readonly key: string; readonly parts: readonly string[] }[];
  readonly rule: RateLimitRule | undefined;
  readonly valueToMetric: boolean;
  /** This node's key_value when it has share_threshold, else ''. */
  readonly sharePattern: string;
}

const newNode = (rule?: RateLimitRule, valueToMetric = false, sharePattern = ''): Node =>
  ({ children: new Map(), wildcards: [], rule, valueToMetric, sharePattern });

export class RateLimitConfig {
  /** Use parseRateLimitFiles. */
  constructor(private readonly tree: ReadonlyMap<string, Node>) {}

  domains(): string[] {
    return [...this.tree.keys()];
  }

  hasDomain(domain: string): boolean {
    return this.tree.has(domain);
  }

  /**
   * Upstream GetLimit (config_impl.go:446-673): walks the request's entries level by level, trying `key_value`
   * exactly, then the level's wildcard patterns, then `key` alone (a descriptor without value). A rule matches only
   * if it sits at the request's last entry; the walk stops early (no match) when a level has no children.
   */
  match(domain: string, entries: readonly DescriptorEntry[], override?: LimitOverride): RateLimitRule | undefined {
    const root = this.tree.get(domain);
    if (root === undefined) return undefined;
    if (override !== undefined) return overrideRule(domain, entries, override);
    let level = root;
    let found: RateLimitRule | undefined;
    let detailedKey = domain;
    let valueKey = domain;
    const shared: (string | undefined)[] = entries.map(() => undefined);
    for (let i = 0; i < entries.length; i++) {
      const { key, value } = entries[i]!;
      const finalKey = `${key}_${value}`;
      detailedKey += `.${finalKey}`;
      let next = level.children.get(finalKey);
      let wildcardKey: string | undefined;
      if (next === undefined) {
        wildcardKey = level.wildcards.find((w) => wildcardMatch(w.parts, finalKey))?.key;
        if (wildcardKey !== undefined) next = level.children.get(wildcardKey);
      }
      const byValue = next !== undefined;
      next ??= level.children.get(key);
      if (next === undefined) break;
      if (wildcardKey !== undefined && next.sharePattern !== '') shared[i] = trimPrefix(next.sharePattern, `${key}_`);
      // The value_to_metric key (config_impl.go:534-572); without any flag it equals the rule's own key.
      let metricValue = '';
      if (wildcardKey !== undefined) metricValue = shared[i] ?? (next.valueToMetric ? value : trimPrefix(wildcardKey, `${key}_`));
      else if (byValue || next.valueToMetric) metricValue = value;
      valueKey += metricValue === '' ? `.${key}` : `.${key}_${metricValue}`;
      if (next.rule !== undefined && i === entries.length - 1) found = next.rule;
      level = next;
    }
    if (found === undefined) return undefined;
    const isShared = shared.some((v) => v !== undefined);
    let statsKey = valueKey;
    if (found.detailedMetric) {
      statsKey = !isShared
        ? detailedKey
        : domain + entries.map((e, i) => `.${e.key}${shared[i] !== undefined ? `_${shared[i]}` : e.value === '' ? '' : `_${e.value}`}`).join('');
    }
    if (statsKey === found.statsKey && !isShared) return found;
    return Object.freeze({ ...found, statsKey, shareThresholdValues: isShared ? Object.freeze(shared) : NONE });
  }
}

const NONE: readonly never[] = Object.freeze([]);

function overrideRule(domain: string, entries: readonly DescriptorEntry[], override: LimitOverride): RateLimitRule {
  // config_impl.go:459-475 and descriptorKey at 679-691: no shadow mode, no name, stats keyed by the request's values.
  return Object.freeze({
    unlimited: false, shadowMode: false, quotaMode: false, name: undefined, detailedMetric: false, replaces: NONE, shareThresholdValues: NONE,
    stableId: JSON.stringify(['override', domain, ...entries.map((e) => [e.key, e.value])]),
    statsKey: `${domain}.${entries.map((e) => (e.value === '' ? e.key : `${e.key}_${e.value}`)).join('.')}`,
    ruleKey: `${domain}.(override)`,
    unit: override.unit,
    requestsPerUnit: override.requestsPerUnit,
  });
}

/** Upstream wildcardMatch (config_impl.go:199-238): each `*` matches any run, in order, anchored at both ends. */
function wildcardMatch(parts: readonly string[], value: string): boolean {
  if (parts.length === 1) return parts[0] === value;
  const [first, last] = [parts[0]!, parts[parts.length - 1]!];
  if (!value.startsWith(first) || !value.endsWith(last)) return false;
  if (value.length < parts.reduce((n, p) => n + p.length, 0)) return false;
  let rest = value.slice(first.length, value.length - last.length);
  for (const part of parts.slice(1, -1)) {
    const at = rest.indexOf(part);
    if (at < 0) return false;
    rest = rest.slice(at + part.length);
  }
  return true;
}

const trimPrefix = (s: string, prefix: string): string => (s.startsWith(prefix) ? s.slice(prefix.length) : s);

/**
 * Upstream constructLimitsToCheck (src/service/ratelimit.go:157-181): every matched rule's `replaces` names
 * (unlimited rules' included) are collected first; then each limited rule whose name is among them is dropped,
 * even if that rule itself replaces another. Unlimited rules are kept: upstream answers them OK either way.
 */
export function applyReplaces(rules: ReadonlyArray<RateLimitRule | undefined>): Array<RateLimitRule | undefined> {
  const replaced = new Set<string>();
  for (const rule of rules) for (const name of rule?.replaces ?? []) replaced.add(name);
  return rules.map((r) => (r !== undefined && !r.unlimited && r.name !== undefined && replaced.has(r.name) ? undefined : r));
}

/** Upstream's counter key (src/limiter/cache_key.go:48-88), e.g. `domain_key1_value1_key2_value2_1700000000`. */
export function upstreamCacheKey(prefix: string, domain: string, entries: readonly DescriptorEntry[], rule: RateLimitRule, nowSeconds: number): string {
  if (rule.unit === undefined) throw new RangeError('an unlimited rule has no counter');
  const values = entries.map((e, i) => `${e.key}_${rule.shareThresholdValues[i] ?? e.value}_`).join('');
  const divider = unitSeconds(rule.unit);
  return `${prefix}${domain}_${values}${Math.floor(nowSeconds / divider) * divider}`;
}

/** The name upstream gives a rule's counters (SanitizeStatName, src/utils/utilities.go:65-73), before `.total_hits` etc. */
export function upstreamStatName(statsKey: string): string {
  return statsKey.replace(/[:|]/g, '_').replace(/\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}/g, (ip) => ip.replaceAll('.', '_'));
}

// ---- Parsing ---------------------------------------------------------------------------------------------------

/**
 * A YAML scalar with the text it was written as. Upstream decodes with gopkg.in/yaml.v2 (YAML 1.1), which gives a
 * string field the source text of any non-null scalar: `value: on` is "on", `value: 010` is "010", not true or 8.
 */
class Leaf {
  constructor(readonly value: unknown, readonly text: string) {}
  toString(): string {
    return this.text;
  }
  get kind(): 'null' | 'bool' | 'int' | 'float' | 'string' {
    if (this.value === null) return 'null';
    if (typeof this.value === 'boolean') return 'bool';
    if (typeof this.value !== 'number') return 'string';
    if (/^[-+]?(?:0b[01_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*)$/.test(this.text)) return 'int';
    return this.text.includes(':') ? 'string' : 'float'; // yaml.v2 has no sexagesimal numbers
  }
}

const VALID_KEYS = new Set([
  'domain', 'key', 'value', 'descriptors', 'rate_limit', 'unit', 'requests_per_unit', 'unlimited', 'shadow_mode',
  'quota_mode', 'name', 'replaces', 'detailed_metric', 'value_to_metric', 'share_threshold', 'metadata',
]);
const MAX_ALIAS_COUNT = 1000;
type YMap = Map<unknown, unknown>;
type Fail = (path: string, reason: string) => never;

/**
 * Parses upstream config files into one config. Each file holds one domain; a domain in two files is an error
 * unless `mergeDomains` (upstream's MERGE_DOMAIN_CONFIG), with which later files add descriptors to it.
 */
export function parseRateLimitFiles(
  files: ReadonlyArray<{ readonly name: string; readonly text: string }>, options: { readonly mergeDomains?: boolean } = {},
): RateLimitConfig {
  const domains = new Map<string, Node>();
  for (const { name: file, text } of files) {
    const fail: Fail = (path, reason) => {
      throw new RateLimitConfigError(file, path, reason);
    };
    const root = loadYaml(text, fail);
    checkKeys(root, '', new Set(), fail);
    const f = fields(root, '', fail);
    const domain = f.str('domain');
    if (domain === '') fail('domain', 'config file cannot have empty domain');
    let node = domains.get(domain);
    if (node !== undefined && options.mergeDomains !== true) fail('domain', `duplicate domain '${domain}' in config file`);
    if (node === undefined) domains.set(domain, (node = newNode()));
    loadDescriptors(node, domain, [], f.maps('descriptors'), fail);
  }
  return new RateLimitConfig(domains);
}

function loadYaml(text: string, fail: Fail): YMap {
  // Deliberately stricter than yaml.v2 here: duplicate mapping keys and extra documents are errors, not dropped.
  const doc = parseDocument(text, { version: '1.1', merge: true, uniqueKeys: true });
  const error = doc.errors[0]?.message.split('\n')[0]?.replace(/:$/, '');
  if (error !== undefined) fail('', `error loading config file: ${error}`);
  visit(doc, {
    Scalar(key, node: { value: unknown; source?: string }) {
      if (key !== 'key') node.value = new Leaf(node.value, typeof node.value === 'string' ? node.value : (node.source ?? String(node.value)));
    },
  });
  let root: unknown;
  try {
    root = doc.toJS({ mapAsMap: true, maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    fail('', `error loading config file: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (root === null || root === undefined || (root instanceof Leaf && root.kind === 'null')) return new Map();
  if (!(root instanceof Map)) return fail('', 'error loading config file: the document is not a mapping');
  return root;
}

/** Upstream validateYamlKeys (config_impl.go:357-402): one flat set of known keys, checked at every level. */
function checkKeys(map: YMap, path: string, open: Set<unknown>, fail: Fail): void {
  if (open.has(map)) fail(path, 'error loading config file: an alias refers to a mapping that contains it');
  open.add(map);
  for (const [key, value] of map) {
    if (typeof key !== 'string') fail(path, `config error, key is not of type string: ${String(key)}`);
    const at = path === '' ? key : `${path}.${key}`;
    if (!VALID_KEYS.has(key)) fail(at, `config error, unknown key '${key}'`);
    if (key === 'metadata') continue; // free-form, as upstream
    if (Array.isArray(value)) {
      value.forEach((item: unknown, i) => {
        if (!(item instanceof Map)) fail(`${at}[${i}]`, `config error, yaml file contains list of type other than map: ${String(item)}`);
        checkKeys(item, `${at}[${i}]`, open, fail);
      });
    } else if (value instanceof Map) checkKeys(value, at, open, fail);
    else if (value instanceof Leaf && value.kind === 'float') fail(at, `error checking config: ${value.text} is not a string, integer or boolean`);
  }
  open.delete(map);
}

/** Typed reads of one mapping, with yaml.v2's conversions: null/absent is the zero value. */
function fields(map: YMap, path: string, fail: Fail) {
  const at = (key: string): string => (path === '' ? key : `${path}.${key}`);
  const get = (key: string): unknown => {
    const v = map.get(key);
    return v === null || (v instanceof Leaf && v.kind === 'null') ? undefined : v;
  };
  const leaf = (key: string, want: string): Leaf | undefined => {
    const v = get(key);
    if (v === undefined || v instanceof Leaf) return v;
    return fail(at(key), `expected ${want}, found a ${Array.isArray(v) ? 'list' : 'mapping'}`);
  };
  return {
    str: (key: string): string => leaf(key, 'a string')?.text ?? '',
    bool(key: string): boolean {
      const v = leaf(key, 'a boolean');
      if (v !== undefined && v.kind !== 'bool') fail(at(key), `expected a boolean, found '${v.text}'`);
      return v?.value === true;
    },
    uint32(key: string): number {
      const v = leaf(key, 'an integer');
      if (v === undefined) return 0;
      const n = v.value;
      if (v.kind !== 'int' || typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0 || n > 0xffff_ffff) {
        fail(at(key), `expected an integer from 0 to 4294967295, found '${v.text}'`);
      }
      return n as number;
    },
    map(key: string): YMap | undefined {
      const v = get(key);
      return v === undefined || v instanceof Map ? v : fail(at(key), 'expected a mapping');
    },
    maps(key: string): { map: YMap; path: string }[] {
      const v = get(key) ?? [];
      if (!Array.isArray(v)) return fail(at(key), 'expected a list');
      return v.map((item: YMap, i) => ({ map: item, path: `${at(key)}[${i}]` })); // checkKeys made them mappings
    },
  };
}

/** Upstream loadDescriptors (config_impl.go:245-352). */
function loadDescriptors(parent: Node, domain: string, levels: readonly string[], list: readonly { map: YMap; path: string }[], fail: Fail): void {
  for (const { map, path } of list) {
    const f = fields(map, path, fail);
    const key = f.str('key');
    if (key === '') fail(`${path}.key`, 'descriptor has empty key');
    const value = f.str('value');
    const finalKey = value === '' ? key : `${key}_${value}`;
    const fullKey = [domain, ...levels, finalKey].join('.');
    if (parent.children.has(finalKey)) fail(path, `duplicate descriptor composite key '${fullKey}'`);
    const [shadowMode, quotaMode, detailedMetric] = [f.bool('shadow_mode'), f.bool('quota_mode'), f.bool('detailed_metric')];
    const limit = f.map('rate_limit');
    let rule: RateLimitRule | undefined;
    if (limit !== undefined) {
      const l = fields(limit, `${path}.rate_limit`, fail);
      const unlimited = l.bool('unlimited');
      const unitText = l.str('unit');
      const unit = UNIT_BY_NAME.get(unitText.toUpperCase());
      if (unlimited && unit !== undefined) fail(`${path}.rate_limit.unit`, 'should not specify rate limit unit when unlimited');
      if (!unlimited && unit === undefined) fail(`${path}.rate_limit.unit`, `invalid rate limit unit '${unitText}'`);
      const requestsPerUnit = l.uint32('requests_per_unit');
      const name = l.str('name');
      const replaces = l.maps('replaces').map((r) => {
        const replacedName = fields(r.map, r.path, fail).str('name');
        if (replacedName === '') fail(r.path, 'should not have an empty replaces entry');
        if (replacedName === name) fail(r.path, 'replaces should not contain name of same descriptor');
        return replacedName;
      });
      rule = Object.freeze({
        stableId: JSON.stringify([domain, ...levels, finalKey]), statsKey: fullKey, ruleKey: fullKey, unit: unlimited ? undefined : unit,
        requestsPerUnit, unlimited, shadowMode, quotaMode, name: name === '' ? undefined : name,
        replaces: Object.freeze(replaces), detailedMetric, shareThresholdValues: NONE,
      });
    }
    const shareThreshold = f.bool('share_threshold');
    if (shareThreshold && !finalKey.includes('*')) {
      fail(`${path}.share_threshold`, `share_threshold can only be used with wildcard values (containing '*'), but found key '${finalKey}'`);
    }
    if (finalKey.includes('*')) parent.wildcards.push({ key: finalKey, parts: finalKey.split('*') });
    f.map('metadata'); // must be a mapping; its content (upstream's response dynamic metadata) is not kept here
    const node = newNode(rule, f.bool('value_to_metric'), shareThreshold ? finalKey : '');
    loadDescriptors(node, domain, [...levels, finalKey], f.maps('descriptors'), fail);
    parent.children.set(finalKey, node);
  }
}
