import { describe, expect, it } from 'vitest';
import {
  applyReplaces,
  parseRateLimitFiles,
  RateLimitConfigError,
  unitSeconds,
  upstreamCacheKey,
  upstreamStatName,
  type DescriptorEntry,
  type RateLimitConfig,
} from '../src/ratelimit/config.js';

const yaml = (lines: string[]): string => `${lines.join('\n')}\n`;
const load = (text: string, name = 'config.yaml'): RateLimitConfig => parseRateLimitFiles([{ name, text }]);
const d = (...pairs: [string, string][]): DescriptorEntry[] => pairs.map(([key, value]) => ({ key, value }));

function rejection(files: { name: string; text: string }[], options?: { mergeDomains?: boolean }): RateLimitConfigError {
  try {
    parseRateLimitFiles(files, options);
  } catch (err) {
    if (err instanceof RateLimitConfigError) return err;
    throw err;
  }
  throw new Error('the configuration was accepted');
}
const reject = (text: string): RateLimitConfigError => rejection([{ name: 'bad.yaml', text }]);

describe('README examples', () => {
  it('two values of one key each get their own limit; other values get none', () => {
    const cfg = load(yaml([
      'domain: db_ops',
      'descriptors:',
      '  - key: table',
      '    value: accounts',
      '    rate_limit: {unit: second, requests_per_unit: 300}',
      '  - key: table',
      '    value: fallback',
      '    rate_limit: {unit: second, requests_per_unit: 40}',
    ]));
    expect(cfg.match('db_ops', d(['table', 'accounts']))).toMatchObject({ requestsPerUnit: 300, unit: 'second', statsKey: 'db_ops.table_accounts' });
    expect(cfg.match('db_ops', d(['table', 'fallback']))?.requestsPerUnit).toBe(40);
    expect(cfg.match('db_ops', d(['table', 'orders']))).toBeUndefined();
  });

  // Nested placeholder without a limit, a key-only child, and a top-level key-only rule (the to_number style).
  const sms = load(yaml([
    'domain: sms',
    'descriptors:',
    '  - key: campaign',
    '    value: promo',
    '    descriptors:',
    '      - key: recipient',
    '        rate_limit: {unit: day, requests_per_unit: 3}',
    '  - key: recipient',
    '    rate_limit: {unit: day, requests_per_unit: 50}',
  ]));

  it('a key without value under a nested placeholder matches any value at that depth', () => {
    const a = sms.match('sms', d(['campaign', 'promo'], ['recipient', '+15550001']));
    const b = sms.match('sms', d(['campaign', 'promo'], ['recipient', '+15550002']));
    expect(a).toMatchObject({ requestsPerUnit: 3, unit: 'day', statsKey: 'sms.campaign_promo.recipient' });
    expect(b).toBe(a);
    expect(sms.match('sms', d(['recipient', '+15550001']))).toMatchObject({ requestsPerUnit: 50, statsKey: 'sms.recipient' });
  });

  it('a placeholder level without rate_limit is no rule of its own', () => {
    expect(sms.match('sms', d(['campaign', 'promo']))).toBeUndefined();
    expect(sms.match('sms', d(['campaign', 'other'], ['recipient', '+1']))).toBeUndefined();
  });

  it('key_value is tried before the key-only default at the same level', () => {
    const cfg = load(yaml([
      'domain: edge',
      'descriptors:',
      '  - key: client_ip',
      '    rate_limit: {unit: second, requests_per_unit: 25}',
      '  - key: client_ip',
      '    value: 192.0.2.9',
      '    rate_limit: {unit: second, requests_per_unit: 0}',
    ]));
    expect(cfg.match('edge', d(['client_ip', '192.0.2.9']))).toMatchObject({ requestsPerUnit: 0, statsKey: 'edge.client_ip_192.0.2.9' });
    expect(cfg.match('edge', d(['client_ip', '192.0.2.10']))?.requestsPerUnit).toBe(25);
    expect(upstreamStatName('edge.client_ip_192.0.2.9')).toBe('edge.client_ip_192_0_2_9');
    expect(upstreamStatName('d.k_a:b|c')).toBe('d.k_a_b_c');
  });

  it('the request must have exactly as many entries as the depth of the rule it reaches', () => {
    const flat = load(yaml(['domain: depth', 'descriptors:', '  - key: k', '    value: v', '    rate_limit: {unit: second, requests_per_unit: 7}']));
    expect(flat.match('depth', d(['k', 'v'], ['sub', 'x']))).toBeUndefined();
    expect(flat.match('depth', d(['k', 'v']))?.requestsPerUnit).toBe(7);
    const nested = load(yaml([
      'domain: depth',
      'descriptors:',
      '  - key: k',
      '    value: v',
      '    rate_limit: {unit: minute, requests_per_unit: 70}',
      '    descriptors:',
      '      - key: sub',
      '        rate_limit: {unit: second, requests_per_unit: 8}',
    ]));
    expect(nested.match('depth', d(['k', 'v'], ['sub', 'x']))).toMatchObject({ requestsPerUnit: 8, statsKey: 'depth.k_v.sub' });
    // Fewer entries than the config is deep: the rule on the level reached applies.
    expect(nested.match('depth', d(['k', 'v']))?.requestsPerUnit).toBe(70);
    expect(nested.match('depth', d(['k', 'v'], ['sub', 'x'], ['more', 'y']))).toBeUndefined();
    expect(nested.match('depth', d(['sub', 'x']))).toBeUndefined();
  });

  it('nested per-address, per-path limits with a wildcard path', () => {
    const cfg = load(yaml([
      'domain: per_ip_path',
      'descriptors:',
      '  - key: remote_address',
      '    descriptors:',
      '      - key: path',
      '        value: /login',
      '        rate_limit: {unit: minute, requests_per_unit: 5}',
      '      - key: path',
      '        value: /api/*',
      '        rate_limit: {unit: minute, requests_per_unit: 100}',
      '      - key: path',
      '        rate_limit: {unit: minute, requests_per_unit: 1000}',
    ]));
    const ip = ['remote_address', '203.0.113.7'] as [string, string];
    expect(cfg.match('per_ip_path', d(ip, ['path', '/login']))).toMatchObject({ requestsPerUnit: 5, statsKey: 'per_ip_path.remote_address.path_/login' });
    expect(cfg.match('per_ip_path', d(ip, ['path', '/api/v1/models']))).toMatchObject({ requestsPerUnit: 100, statsKey: 'per_ip_path.remote_address.path_/api/*' });
    expect(cfg.match('per_ip_path', d(ip, ['path', '/home']))?.requestsPerUnit).toBe(1000);
    expect(cfg.match('per_ip_path', d(['path', '/login']))).toBeUndefined();
  });

  it('wildcards: trailing, middle and repeated *, all anchored at both ends', () => {
    const cfg = load(yaml([
      'domain: wild',
      'descriptors:',
      '  - {key: tail, value: "ab*", rate_limit: {unit: minute, requests_per_unit: 1}}',
      '  - {key: mid, value: "x*z", rate_limit: {unit: minute, requests_per_unit: 2}}',
      '  - {key: multi, value: "a*b*c", rate_limit: {unit: minute, requests_per_unit: 3}}',
      '  - {key: plain, value: ab, rate_limit: {unit: minute, requests_per_unit: 4}}',
    ]));
    const rpu = (key: string, value: string): number | undefined => cfg.match('wild', d([key, value]))?.requestsPerUnit;
    expect([rpu('tail', 'ab'), rpu('tail', 'abzzz'), rpu('tail', 'xab')]).toEqual([1, 1, undefined]);
    expect([rpu('mid', 'xz'), rpu('mid', 'x123z'), rpu('mid', 'x123'), rpu('mid', 'ax1z')]).toEqual([2, 2, undefined, undefined]);
    expect([rpu('multi', 'abc'), rpu('multi', 'a1b2c'), rpu('multi', 'a1c'), rpu('multi', 'b1c')]).toEqual([3, 3, undefined, undefined]);
    expect([rpu('plain', 'ab'), rpu('plain', 'abc')]).toEqual([4, undefined]);
    expect(cfg.match('wild', d(['tail', 'ab1']))?.statsKey).toBe('wild.tail_ab*');
  });

  it('exact value beats a wildcard, a wildcard beats the key-only default, and the first wildcard listed wins', () => {
    const cfg = load(yaml([
      'domain: order',
      'descriptors:',
      '  - {key: m, rate_limit: {unit: hour, requests_per_unit: 1}}',
      '  - {key: m, value: "llama*", rate_limit: {unit: hour, requests_per_unit: 2}}',
      '  - {key: m, value: "llama-3*", rate_limit: {unit: hour, requests_per_unit: 3}}',
      '  - {key: m, value: llama-3-8b, rate_limit: {unit: hour, requests_per_unit: 4}}',
    ]));
    const rpu = (value: string): number | undefined => cfg.match('order', d(['m', value]))?.requestsPerUnit;
    expect([rpu('llama-3-8b'), rpu('llama-3-70b'), rpu('llama-2'), rpu('qwen')]).toEqual([4, 2, 2, 1]);
  });

  it('unlimited rules are returned as unlimited with no unit', () => {
    const cfg = load(yaml([
      'domain: internal',
      'descriptors:',
      '  - {key: batch, rate_limit: {unlimited: true}}',
      '  - {key: web, rate_limit: {unit: minute, requests_per_unit: 60}}',
    ]));
    expect(cfg.match('internal', d(['batch', 'nightly']))).toMatchObject({ unlimited: true, unit: undefined, statsKey: 'internal.batch' });
    expect(cfg.match('internal', d(['web', 'x']))).toMatchObject({ unlimited: false, unit: 'minute' });
  });

  it('shadow_mode is a per-descriptor flag carried on the rule', () => {
    const cfg = load(yaml([
      'domain: soft',
      'descriptors:',
      '  - key: tenant',
      '    descriptors:',
      '      - {key: user, value: alice, shadow_mode: true, rate_limit: {unit: second, requests_per_unit: 10}}',
      '      - {key: user, value: bob, rate_limit: {unit: second, requests_per_unit: 20}}',
    ]));
    expect(cfg.match('soft', d(['tenant', 't'], ['user', 'alice']))).toMatchObject({ shadowMode: true, requestsPerUnit: 10 });
    expect(cfg.match('soft', d(['tenant', 't'], ['user', 'bob']))).toMatchObject({ shadowMode: false, requestsPerUnit: 20 });
  });

  describe('replaces', () => {
    const cfg = load(yaml([
      'domain: repl',
      'descriptors:',
      '  - key: plan',
      '    value: basic',
      '    descriptors:',
      '      - {key: user, value: carol, rate_limit: {name: carol_basic, unit: second, requests_per_unit: 5}}',
      '  - key: plan',
      '    value: boost',
      '    descriptors:',
      '      - key: user',
      '        value: carol',
      '        rate_limit: {replaces: [{name: carol_basic}], unit: second, requests_per_unit: 10}',
      '  - {key: a, rate_limit: {name: ra, replaces: [{name: rb}], unit: second, requests_per_unit: 1}}',
      '  - {key: b, rate_limit: {name: rb, replaces: [{name: ra}], unit: second, requests_per_unit: 1}}',
      '  - {key: u, rate_limit: {unlimited: true, name: ru, replaces: [{name: carol_basic}]}}',
      '  - {key: v, rate_limit: {name: ru, unit: second, requests_per_unit: 1}}',
      '  - {key: w, rate_limit: {replaces: [{name: ru}], unit: second, requests_per_unit: 1}}',
    ]));
    const basic = cfg.match('repl', d(['plan', 'basic'], ['user', 'carol']));
    const boost = cfg.match('repl', d(['plan', 'boost'], ['user', 'carol']));

    it('carries name and replaces on the rule', () => {
      expect(basic).toMatchObject({ name: 'carol_basic', replaces: [] });
      expect(boost).toMatchObject({ name: undefined, replaces: ['carol_basic'] });
    });

    it('drops a named rule when another matched rule of the request replaces it, in any order', () => {
      expect(applyReplaces([basic, boost])).toEqual([undefined, boost]);
      expect(applyReplaces([boost, undefined, basic])).toEqual([boost, undefined, undefined]);
      expect(applyReplaces([basic])).toEqual([basic]);
    });

    it('a replaced rule still replaces others, and unlimited rules replace but are never dropped', () => {
      const ra = cfg.match('repl', d(['a', '1']));
      const rb = cfg.match('repl', d(['b', '1']));
      expect(applyReplaces([ra, rb])).toEqual([undefined, undefined]);
      const ru = cfg.match('repl', d(['u', '1']));
      const rv = cfg.match('repl', d(['v', '1']));
      expect(applyReplaces([ru, basic, rv])).toEqual([ru, undefined, rv]);
      const rw = cfg.match('repl', d(['w', '1']));
      expect(applyReplaces([ru, rv, rw])).toEqual([ru, undefined, rw]);
    });
  });

  describe('detailed_metric and value_to_metric change the stats key, not the limit', () => {
    it('detailed_metric puts the request values in the stats key', () => {
      const cfg = load(yaml([
        'domain: detail',
        'descriptors:',
        '  - {key: k1, detailed_metric: true, rate_limit: {unit: minute, requests_per_unit: 10}}',
        '  - {key: k1, value: known, rate_limit: {unit: minute, requests_per_unit: 20}}',
        '  - key: outer',
        '    descriptors:',
        '      - {key: inner, detailed_metric: true, rate_limit: {unit: minute, requests_per_unit: 5}}',
      ]));
      const a = cfg.match('detail', d(['k1', 'some_value']));
      const b = cfg.match('detail', d(['k1', 'other']));
      expect(a).toMatchObject({ statsKey: 'detail.k1_some_value', requestsPerUnit: 10, detailedMetric: true });
      expect(b?.statsKey).toBe('detail.k1_other');
      expect(b?.stableId).toBe(a?.stableId);
      expect(cfg.match('detail', d(['k1', 'known']))?.statsKey).toBe('detail.k1_known');
      expect(cfg.match('detail', d(['outer', 'o'], ['inner', 'i']))?.statsKey).toBe('detail.outer_o.inner_i');
      expect(cfg.match('detail', d(['k1', '']))?.statsKey).toBe('detail.k1_');
    });

    it('value_to_metric adds the runtime value of that level only', () => {
      const cfg = load(yaml([
        'domain: v2m',
        'descriptors:',
        '  - key: route',
        '    value_to_metric: true',
        '    descriptors:',
        '      - key: method',
        '        value_to_metric: true',
        '        descriptors:',
        '          - {key: subject, rate_limit: {unit: minute, requests_per_unit: 60}}',
        '  - key: user',
        '    value_to_metric: true',
        '    descriptors:',
        '      - key: action',
        '        value: "read*"',
        '        value_to_metric: true',
        '        descriptors:',
        '          - {key: resource, rate_limit: {unit: minute, requests_per_unit: 100}}',
      ]));
      expect(cfg.match('v2m', d(['route', 'chat'], ['method', 'POST'], ['subject', 's1']))?.statsKey).toBe('v2m.route_chat.method_POST.subject');
      expect(cfg.match('v2m', d(['user', 'dana'], ['action', 'readfile'], ['resource', 'doc']))?.statsKey).toBe('v2m.user_dana.action_readfile.resource');
    });
  });

  it('share_threshold makes all values matching a wildcard share one counter', () => {
    const cfg = load(yaml([
      'domain: share',
      'descriptors:',
      '  - {key: doc, value: "docs/*", share_threshold: true, rate_limit: {unit: hour, requests_per_unit: 10}}',
      '  - {key: solo, value: "solo/*", rate_limit: {unit: hour, requests_per_unit: 10}}',
      '  - key: team',
      '    value: "t/*"',
      '    share_threshold: true',
      '    descriptors: [{key: op, detailed_metric: true, rate_limit: {unit: minute, requests_per_unit: 5}}]',
    ]));
    const now = 1_700_000_000;
    const key = (k: string, v: string): string => upstreamCacheKey('', 'share', d([k, v]), cfg.match('share', d([k, v]))!, now);
    expect(key('doc', 'docs/a.pdf')).toBe(key('doc', 'docs/b.csv'));
    expect(key('doc', 'docs/a.pdf')).toBe('share_doc_docs/*_1699999200');
    expect(key('solo', 'solo/a')).not.toBe(key('solo', 'solo/b'));
    expect(cfg.match('share', d(['doc', 'docs/x']))).toMatchObject({ statsKey: 'share.doc_docs/*', shareThresholdValues: ['docs/*'] });
    // With detailed_metric, shared levels show the pattern and the others their value (no trailing _ when empty).
    expect(cfg.match('share', d(['team', 't/a'], ['op', 'read']))).toMatchObject({ statsKey: 'share.team_t/*.op_read', shareThresholdValues: ['t/*', undefined] });
    expect(cfg.match('share', d(['team', 't/b'], ['op', '']))?.statsKey).toBe('share.team_t/*.op');
  });
});

describe('units and windows', () => {
  it('parses unit names case-insensitively, like Go strings.ToUpper', () => {
    const units = ['SECOND', 'Minute', 'hOuR', 'day', 'WEEK', 'month', 'Year', 'ſecond'];
    const cfg = load(yaml(['domain: u', 'descriptors:', ...units.map((u, i) => `  - {key: k${i}, rate_limit: {unit: "${u}", requests_per_unit: 1}}`)]));
    expect(units.map((_, i) => cfg.match('u', d([`k${i}`, 'x']))?.unit)).toEqual(['second', 'minute', 'hour', 'day', 'week', 'month', 'year', 'second']);
  });

  it('upstream window lengths, with MONTH as 30 days and YEAR as 365 days', () => {
    expect(['second', 'minute', 'hour', 'day', 'week', 'month', 'year'].map((u) => unitSeconds(u as 'second'))).toEqual([1, 60, 3600, 86400, 604800, 2592000, 31536000]);
  });

  it('the counter key names domain, entries and the epoch-aligned window start', () => {
    const cfg = load(yaml(['domain: w', 'descriptors:', '  - {key: a, descriptors: [{key: b, rate_limit: {unit: minute, requests_per_unit: 1}}]}']));
    const entries = d(['a', '1'], ['b', '']);
    const rule = cfg.match('w', entries)!;
    expect(upstreamCacheKey('pfx:', 'w', entries, rule, 1_700_000_065)).toBe('pfx:w_a_1_b__1700000040');
    const monthly = load(yaml(['domain: m', 'descriptors:', '  - {key: a, rate_limit: {unit: month, requests_per_unit: 1}}'])).match('m', d(['a', 'x']))!;
    expect(upstreamCacheKey('', 'm', d(['a', 'x']), monthly, 1_700_000_000)).toBe(`m_a_x_${1_700_000_000 - (1_700_000_000 % 2_592_000)}`);
  });
});

describe('lookups', () => {
  const cfg = parseRateLimitFiles([
    { name: 'one.yaml', text: yaml(['domain: one', 'descriptors:', '  - {key: k, rate_limit: {unit: second, requests_per_unit: 1}}']) },
    { name: 'two.yaml', text: yaml(['domain: two', 'descriptors:', '  - {key: k, rate_limit: {unit: second, requests_per_unit: 2}}']) },
  ]);

  it('several files, one domain each', () => {
    expect(cfg.domains()).toEqual(['one', 'two']);
    expect(cfg.match('one', d(['k', 'v']))?.requestsPerUnit).toBe(1);
    expect(cfg.match('two', d(['k', 'v']))?.requestsPerUnit).toBe(2);
  });

  it('unknown domains and empty descriptors match nothing', () => {
    expect(cfg.match('three', d(['k', 'v']))).toBeUndefined();
    expect(cfg.match('one', [])).toBeUndefined();
  });

  it('a limit override from Envoy replaces the config, keyed by the request values, only in a known domain', () => {
    const rule = cfg.match('one', d(['k', 'v'], ['x', '']), { requestsPerUnit: 42, unit: 'hour' });
    expect(rule).toMatchObject({ requestsPerUnit: 42, unit: 'hour', statsKey: 'one.k_v.x', shadowMode: false, name: undefined });
    expect(cfg.match('three', d(['k', 'v']), { requestsPerUnit: 42, unit: 'hour' })).toBeUndefined();
  });

  it('rules are frozen and unique by stableId', () => {
    const a = cfg.match('one', d(['k', 'v']))!;
    expect(Object.isFrozen(a)).toBe(true);
    expect(a.stableId).not.toBe(cfg.match('two', d(['k', 'v']))!.stableId);
  });

  it('mergeDomains lets later files add descriptors to a domain', () => {
    const merged = parseRateLimitFiles(
      [
        { name: 'a.yaml', text: yaml(['domain: m', 'descriptors: [{key: a, rate_limit: {unit: second, requests_per_unit: 1}}]']) },
        { name: 'b.yaml', text: yaml(['domain: m', 'descriptors: [{key: b, rate_limit: {unit: second, requests_per_unit: 2}}]']) },
      ],
      { mergeDomains: true },
    );
    expect([merged.match('m', d(['a', 'x']))?.requestsPerUnit, merged.match('m', d(['b', 'x']))?.requestsPerUnit]).toEqual([1, 2]);
  });
});

describe('YAML as upstream (yaml.v2, YAML 1.1) reads it', () => {
  it('string fields keep the scalar as written; booleans accept yes/on', () => {
    const cfg = load(yaml([
      'domain: raw',
      'descriptors:',
      '  - {key: flag, value: on, shadow_mode: yes, rate_limit: {unit: second, requests_per_unit: 1}}',
      '  - {key: code, value: 010, rate_limit: {unit: second, requests_per_unit: 2}}',
      '  - {key: nothing, value: ~, rate_limit: {unit: second, requests_per_unit: 3}}',
      '  - {key: hex, rate_limit: {unit: second, requests_per_unit: 0x10}}',
    ]));
    expect(cfg.match('raw', d(['flag', 'on']))).toMatchObject({ requestsPerUnit: 1, shadowMode: true });
    expect(cfg.match('raw', d(['flag', 'true']))).toBeUndefined();
    expect(cfg.match('raw', d(['code', '010']))?.requestsPerUnit).toBe(2);
    expect(cfg.match('raw', d(['nothing', 'anything']))?.requestsPerUnit).toBe(3);
    expect(cfg.match('raw', d(['hex', 'x']))?.requestsPerUnit).toBe(16);
  });

  it('__proto__, constructor and toString are ordinary domains, keys and values', () => {
    const cfg = load(yaml([
      'domain: __proto__',
      'descriptors:',
      '  - {key: __proto__, value: constructor, rate_limit: {unit: second, requests_per_unit: 1}}',
      '  - {key: toString, rate_limit: {unit: second, requests_per_unit: 2}}',
    ]));
    expect(cfg.domains()).toEqual(['__proto__']);
    expect(cfg.match('__proto__', d(['__proto__', 'constructor']))?.requestsPerUnit).toBe(1);
    expect(cfg.match('__proto__', d(['toString', 'x']))?.requestsPerUnit).toBe(2);
    expect(cfg.match('__proto__', d(['constructor', 'x']))).toBeUndefined();
    expect(cfg.match('constructor', d(['toString', 'x']))).toBeUndefined();
    expect(({} as Record<string, unknown>)['requests_per_unit']).toBeUndefined();
  });

  it('keys and values are joined as key_value, as upstream does, so these two spellings meet', () => {
    const cfg = load(yaml(['domain: j', 'descriptors:', '  - {key: a, value: b_c, rate_limit: {unit: second, requests_per_unit: 1}}']));
    expect(cfg.match('j', d(['a_b', 'c']))?.requestsPerUnit).toBe(1);
  });

  it('metadata is free-form (its keys are not checked) but must be a mapping', () => {
    const text = yaml(['domain: md', 'descriptors:', '  - key: a', '    metadata: {anything: {goes: [1, 2.5]}}', '    rate_limit: {unit: second, requests_per_unit: 1}']);
    expect(load(text).match('md', d(['a', 'x']))?.requestsPerUnit).toBe(1);
    expect(reject(yaml(['domain: md', 'descriptors: [{key: a, metadata: 5}]'])).path).toBe('descriptors[0].metadata');
  });

  it('with unlimited, an unparsable unit is ignored (upstream only rejects a valid one)', () => {
    expect(load(yaml(['domain: q', 'descriptors: [{key: a, rate_limit: {unlimited: true, unit: fortnight}}]'])).match('q', d(['a', 'x']))?.unlimited).toBe(true);
  });
});

describe('rejections name the file, the path and the reason', () => {
  const cases: [string, string[], string, string][] = [
    ['unknown key', ['domain: t', 'descriptors:', '  - key: a', '    ratelimit: {unit: second}'], 'descriptors[0].ratelimit', "config error, unknown key 'ratelimit'"],
    ['misspelled limit field', ['domain: t', 'descriptors:', '  - key: a', '    rate_limit: {unit: day, requestsperunit: 5}'], 'descriptors[0].rate_limit.requestsperunit', "config error, unknown key 'requestsperunit'"],
    ['non-string key', ['0.25: t', 'domain: t'], '', 'config error, key is not of type string: 0.25'],
    ['list of scalars', ['domain: t', 'descriptors: [a, b]'], 'descriptors[0]', 'config error, yaml file contains list of type other than map: a'],
    ['empty domain', ['descriptors: []'], 'domain', 'config file cannot have empty domain'],
    ['empty key', ['domain: t', 'descriptors: [{value: v}]'], 'descriptors[0].key', 'descriptor has empty key'],
    ['duplicate key/value at one level', ['domain: t', 'descriptors: [{key: a, value: v}, {key: a, value: v}]'], 'descriptors[1]', "duplicate descriptor composite key 't.a_v'"],
    ['bad unit', ['domain: t', 'descriptors: [{key: a, rate_limit: {unit: seconds, requests_per_unit: 1}}]'], 'descriptors[0].rate_limit.unit', "invalid rate limit unit 'seconds'"],
    ['UNKNOWN unit', ['domain: t', 'descriptors: [{key: a, rate_limit: {unit: unknown, requests_per_unit: 1}}]'], 'descriptors[0].rate_limit.unit', "invalid rate limit unit 'unknown'"],
    ['missing unit', ['domain: t', 'descriptors: [{key: a, rate_limit: {requests_per_unit: 1}}]'], 'descriptors[0].rate_limit.unit', "invalid rate limit unit ''"],
    ['unlimited with unit', ['domain: t', 'descriptors: [{key: a, rate_limit: {unlimited: true, unit: day}}]'], 'descriptors[0].rate_limit.unit', 'should not specify rate limit unit when unlimited'],
    ['replaces itself', ['domain: t', 'descriptors: [{key: a, rate_limit: {name: n, replaces: [{name: n}], unit: day}}]'], 'descriptors[0].rate_limit.replaces[0]', 'replaces should not contain name of same descriptor'],
    ['empty replaces', ['domain: t', 'descriptors: [{key: a, rate_limit: {replaces: [{name: ""}], unit: day}}]'], 'descriptors[0].rate_limit.replaces[0]', 'should not have an empty replaces entry'],
    ['fractional requests_per_unit', ['domain: t', 'descriptors: [{key: a, rate_limit: {unit: day, requests_per_unit: 1.5}}]'], 'descriptors[0].rate_limit.requests_per_unit', 'error checking config: 1.5 is not a string, integer or boolean'],
    ['negative requests_per_unit', ['domain: t', 'descriptors: [{key: a, rate_limit: {unit: day, requests_per_unit: -1}}]'], 'descriptors[0].rate_limit.requests_per_unit', "expected an integer from 0 to 4294967295, found '-1'"],
    ['requests_per_unit beyond uint32', ['domain: t', 'descriptors: [{key: a, rate_limit: {unit: day, requests_per_unit: 4294967296}}]'], 'descriptors[0].rate_limit.requests_per_unit', "expected an integer from 0 to 4294967295, found '4294967296'"],
    ['quoted requests_per_unit', ['domain: t', 'descriptors: [{key: a, rate_limit: {unit: day, requests_per_unit: "5"}}]'], 'descriptors[0].rate_limit.requests_per_unit', "expected an integer from 0 to 4294967295, found '5'"],
    ['quoted boolean', ['domain: t', 'descriptors: [{key: a, shadow_mode: "true"}]'], 'descriptors[0].shadow_mode', "expected a boolean, found 'true'"],
    ['rate_limit not a mapping', ['domain: t', 'descriptors: [{key: a, rate_limit: 5}]'], 'descriptors[0].rate_limit', 'expected a mapping'],
    ['share_threshold without wildcard', ['domain: t', 'descriptors: [{key: a, value: b, share_threshold: true}]'], 'descriptors[0].share_threshold', "share_threshold can only be used with wildcard values (containing '*'), but found key 'a_b'"],
    ['nested duplicate', ['domain: t', 'descriptors:', '  - key: a', '    descriptors: [{key: b}, {key: b}]'], 'descriptors[0].descriptors[1]', "duplicate descriptor composite key 't.a.b'"],
  ];
  it.each(cases)('%s', (_, lines, path, reason) => {
    const err = reject(yaml(lines));
    expect([err.file, err.path, err.reason]).toEqual(['bad.yaml', path, reason]);
    expect(err.message).toBe(path === '' ? `bad.yaml: ${reason}` : `bad.yaml: ${path}: ${reason}`);
  });

  it('a domain defined in two files, naming the second file', () => {
    const file = { name: 'first.yaml', text: yaml(['domain: shared', 'descriptors: [{key: a}]']) };
    const err = rejection([file, { name: 'second.yaml', text: yaml(['domain: shared', 'descriptors: [{key: b}]']) }]);
    expect([err.file, err.path, err.reason]).toEqual(['second.yaml', 'domain', "duplicate domain 'shared' in config file"]);
    const merged = rejection([file, { name: 'again.yaml', text: yaml(['domain: shared', 'descriptors: [{key: a}]']) }], { mergeDomains: true });
    expect([merged.file, merged.reason]).toEqual(['again.yaml', "duplicate descriptor composite key 'shared.a'"]);
  });

  it('malformed YAML, empty files, several documents and duplicate mapping keys', () => {
    expect(reject("'''\n").reason).toMatch(/^error loading config file: /);
    expect(reject('').reason).toBe('config file cannot have empty domain');
    expect(reject('- a\n').reason).toBe('error loading config file: the document is not a mapping');
    expect(reject('domain: a\n---\ndomain: b\n').reason).toMatch(/^error loading config file: .*multiple documents/i);
    expect(reject('domain: a\ndomain: b\n').reason).toMatch(/^error loading config file: .*unique/i);
  });

  it('alias bombs and self-referencing aliases', () => {
    const levels = ['l0: &l0 [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++) levels.push(`l${i}: &l${i} [${Array(10).fill(`*l${i - 1}`).join(', ')}]`);
    const started = Date.now();
    expect(reject(yaml(['domain: t', 'metadata:', ...levels.map((l) => `  ${l}`)])).reason).toMatch(/^error loading config file: .*alias/i);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(reject(yaml(['domain: t', 'descriptors: &d [{key: a, descriptors: *d}]'])).reason).toMatch(/alias/);
    // A few aliases are fine.
    const ok = load(yaml(['domain: t', 'descriptors: [{key: a, rate_limit: &lim {unit: second, requests_per_unit: 9}}, {key: b, rate_limit: {<<: *lim, requests_per_unit: 1}}]']));
    expect([ok.match('t', d(['a', '1']))?.requestsPerUnit, ok.match('t', d(['b', '1']))?.requestsPerUnit]).toEqual([9, 1]);
  });
});
