import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type App } from '../src/app.js';
import { loadLimitsFile, parseLimitsYaml } from '../src/config/load.js';
import type { LimitsExplanation } from '../src/config/provenance.js';
import { mergeKubeState } from '../src/kube/merge.js';
import type { TokenQuotaObject } from '../src/kube/token-quota.js';
import { LIMIT_NAMES } from '../src/limit-kinds.js';
import { createLogger } from '../src/telemetry/logger.js';
import { ADMIN, startTestApp, type TestApp } from './helpers/app.js';

/*
 * Provenance of every effective limit: ConfigSnapshot.explainLimits (level and source of each
 * enforced and shadow value, through the file and through the Kubernetes merge), GET /v1/limits/{user},
 * and POST /v1/admin/reload.
 */

const FILE = (path: string) => ({ kind: 'file', path });

describe('explainLimits on a limits file', () => {
  let dir: string;
  let path: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tw-provenance-'));
    path = join(dir, 'limits.yaml');
    await writeFile(
      path,
      `
defaults: { tokensPerMinute: 1000, tokensPerHour: 50000, tokensPerDay: 100000, requestsPerMinute: 60 }
models:
  m1: { limits: { tokensPerHour: 40000 } }
  m2: {}
groups:
  team: { limits: { tokensPerDay: 90000 }, models: { m1: { requestsPerMinute: 30 } } }
  big: { limits: { tokensPerDay: 95000 } }
  same: { limits: { tokensPerDay: 95000 } }
  open: { limits: { tokensPerDay: null } }
users:
  alice:
    limits: { tokensPerMonth: 2000000, maxConcurrentRequests: null }
    models: { m1: { tokensPerMinute: 300 } }
`,
    );
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('names the level and the file of each value, null as unlimited at its level, and what is set nowhere', async () => {
    const config = await loadLimitsFile(path);
    const e = config.explainLimits('alice', 'm1', ['team', 'big']);
    expect(Object.keys(e)).toEqual([...LIMIT_NAMES]);
    expect(e.tokensPerMinute.enforced).toEqual({ status: 'limited', value: 300, level: { kind: 'user+model', user: 'alice', model: 'm1' }, source: FILE(path) });
    expect(e.tokensPerHour.enforced).toEqual({ status: 'limited', value: 40000, level: { kind: 'model', model: 'm1' }, source: FILE(path) });
    // Several groups: the most generous per field, naming the group that gave it.
    expect(e.tokensPerDay.enforced).toEqual({ status: 'limited', value: 95000, level: { kind: 'group', group: 'big' }, source: FILE(path) });
    expect(e.tokensPerMonth.enforced).toMatchObject({ value: 2000000, level: { kind: 'user', user: 'alice' } });
    expect(e.requestsPerMinute.enforced).toMatchObject({ value: 30, level: { kind: 'group+model', group: 'team', model: 'm1' } });
    expect(e.maxConcurrentRequests.enforced).toEqual({ status: 'unlimited', value: null, level: { kind: 'user', user: 'alice' }, source: FILE(path) });
    for (const name of LIMIT_NAMES) expect(e[name].shadow).toEqual({ status: 'unset', value: null });
    expect(config.source).toEqual(FILE(path));

    const bob = config.explainLimits('bob', 'm2');
    expect(bob.tokensPerMinute.enforced).toEqual({ status: 'limited', value: 1000, level: { kind: 'defaults' }, source: FILE(path) });
    expect(bob.tokensPerMonth.enforced).toEqual({ status: 'unset', value: null });
    expect(bob.maxConcurrentRequests.enforced).toEqual({ status: 'unset', value: null });
    // On a tie the first group listed is named.
    expect(config.explainLimits('bob', 'm2', ['big', 'same']).tokensPerDay.enforced).toMatchObject({ level: { kind: 'group', group: 'big' } });
    expect(config.explainLimits('bob', 'm2', ['same', 'big']).tokensPerDay.enforced).toMatchObject({ level: { kind: 'group', group: 'same' } });
    // A group's null beats any other group's number, and overrides the defaults.
    expect(config.explainLimits('bob', 'm2', ['big', 'open']).tokensPerDay.enforced).toEqual({
      status: 'unlimited',
      value: null,
      level: { kind: 'group', group: 'open' },
      source: FILE(path),
    });
  });

  it('reports shadow values with their level: beside an enforced one, a shadow entry, a shadowed-out trial, the whole file', () => {
    const config = parseLimitsYaml(
      `
defaults: { tokensPerDay: 1000, requestsPerMinute: 10, shadow: { tokensPerHour: 70 } }
models: { m: {} }
users:
  alice: { limits: { tokensPerDay: 800, shadow: { tokensPerDay: 500 } } }
  bob: { limits: { tokensPerDay: 100, shadow: true } }
  carol: { limits: { tokensPerHour: 900 } }
  dave: { limits: { shadow: { requestsPerMinute: null } } }
`,
      'shadow.yaml',
    );
    const alice = config.explainLimits('alice', 'm').tokensPerDay;
    expect(alice.enforced).toMatchObject({ status: 'limited', value: 800, level: { kind: 'user', user: 'alice' } });
    expect(alice.shadow).toEqual({ status: 'limited', value: 500, level: { kind: 'user', user: 'alice' }, source: FILE('shadow.yaml') });
    // shadow: true moves the entry's values into shadow; enforcement falls through to the defaults.
    const bob = config.explainLimits('bob', 'm').tokensPerDay;
    expect(bob.enforced).toMatchObject({ value: 1000, level: { kind: 'defaults' } });
    expect(bob.shadow).toMatchObject({ value: 100, level: { kind: 'user', user: 'bob' } });
    // The defaults' shadow tokensPerHour applies to alice, not to carol whose own level enforces one.
    expect(config.explainLimits('alice', 'm').tokensPerHour.shadow).toMatchObject({ value: 70, level: { kind: 'defaults' } });
    expect(config.explainLimits('carol', 'm').tokensPerHour).toEqual({
      enforced: { status: 'limited', value: 900, level: { kind: 'user', user: 'carol' }, source: FILE('shadow.yaml') },
      shadow: { status: 'unset', value: null },
    });
    expect(config.explainLimits('dave', 'm').requestsPerMinute.shadow).toMatchObject({ status: 'unlimited', value: null, level: { kind: 'user', user: 'dave' } });

    const allShadow = parseLimitsYaml('shadow: true\ndefaults: { tokensPerDay: 5, shadow: { tokensPerDay: 3 } }\nmodels: { m: {} }', 'all.yaml');
    expect(allShadow.explainLimits('x', 'm').tokensPerDay).toEqual({
      enforced: { status: 'unset', value: null },
      shadow: { status: 'limited', value: 3, level: { kind: 'defaults' }, source: FILE('all.yaml') },
    });
  });

  it('keeps names as data: __proto__ and other Object.prototype names find nothing but their own entries', () => {
    const config = parseLimitsYaml(
      `
defaults: { tokensPerDay: 10 }
models: { m: {} }
users: { toString: { limits: { tokensPerDay: 20 } } }
groups: { hasOwnProperty: { limits: { tokensPerMinute: 7 } } }
`,
      'names.yaml',
    );
    const proto = config.explainLimits('__proto__', 'm', ['__proto__', 'constructor', 'valueOf']);
    expect(proto.tokensPerDay.enforced).toMatchObject({ value: 10, level: { kind: 'defaults' } });
    expect(proto.tokensPerMinute.enforced).toEqual({ status: 'unset', value: null });
    expect(config.explainLimits('toString', 'm', ['hasOwnProperty'])).toMatchObject({
      tokensPerDay: { enforced: { value: 20, level: { kind: 'user', user: 'toString' } } },
      tokensPerMinute: { enforced: { value: 7, level: { kind: 'group', group: 'hasOwnProperty' } } },
    });
    // An unknown model: only the levels that do not name a model.
    expect(config.explainLimits('toString', '__proto__').tokensPerDay.enforced).toMatchObject({ value: 20 });
  });

  it('agrees with limitsFor and shadowLimitsFor on every value (random configurations)', () => {
    let seed = 12345;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)]!;
    const entry = () => {
      const out: Record<string, unknown> = {};
      for (const name of LIMIT_NAMES) if (random() < 0.4) out[name] = pick([null, 5, 50, 500]);
      const shadow = pick([undefined, undefined, true, 'object'] as const);
      if (shadow === true) out['shadow'] = true;
      if (shadow === 'object') out['shadow'] = Object.fromEntries(LIMIT_NAMES.filter(() => random() < 0.3).map((n) => [n, pick([null, 1, 40, 400])]));
      return out;
    };
    for (let round = 0; round < 200; round++) {
      const yaml = JSON.stringify({
        shadow: random() < 0.1,
        defaults: entry(),
        models: { m: { limits: entry() } },
        users: { u: { limits: entry(), models: { m: entry() } } },
        groups: { a: { limits: entry(), models: { m: entry() } }, b: { limits: entry() }, c: { models: { m: entry() } } },
      });
      const config = parseLimitsYaml(yaml, 'random');
      for (const groups of [[], ['a'], ['a', 'b', 'c'], ['c', 'b']]) {
        const e = config.explainLimits('u', 'm', groups);
        const values = (side: 'enforced' | 'shadow') =>
          Object.fromEntries(LIMIT_NAMES.flatMap((n) => (e[n][side].status === 'limited' ? [[n, e[n][side].value]] : [])));
        expect(values('enforced'), yaml).toEqual(config.limitsFor('u', 'm', groups));
        expect(values('shadow'), yaml).toEqual(config.shadowLimitsFor('u', 'm', groups));
      }
    }
  });
});

describe('explainLimits through the Kubernetes merge', () => {
  const CONFIG_MAP = `
defaults: { tokensPerMinute: 1000, tokensPerDay: 100000 }
models: { m1: {}, m2: {} }
users:
  alice:
    limits: { tokensPerMinute: 100, tokensPerDay: 5000 }
    models: { m1: { requestsPerMinute: 9, shadow: true } }
groups:
  team: { limits: { tokensPerHour: 7000 } }
`;
  const quota = (name: string, spec: unknown, created = '2026-11-01T00:00:00Z'): TokenQuotaObject => ({
    metadata: { name, namespace: 'llm', generation: 1, creationTimestamp: created },
    spec,
  });
  const TQ = (name: string) => ({ kind: 'tokenQuota', namespace: 'llm', name });
  const CM = { kind: 'configMap', key: 'limits.yaml', namespace: 'llm', name: 'tokenwarden-limits' };

  const merged = mergeKubeState(
    {
      configMapText: CONFIG_MAP,
      configMap: { namespace: 'llm', name: 'tokenwarden-limits', key: 'limits.yaml' },
      tokenQuotas: [
        quota('alice-all', { subjects: { users: ['alice'] }, models: ['*'], limits: { tokensPerMinute: 50 } }),
        quota('alice-try', { subjects: { users: ['alice'] }, models: ['m1'], limits: { tokensPerDay: 3000, tokensPerMinute: 40 }, shadow: true }),
        quota('alice-m1-old', { subjects: { users: ['alice'] }, models: ['m2'], limits: { requestsPerMinute: 5 } }, '2026-01-01T00:00:00Z'),
        quota('alice-m1-young', { subjects: { users: ['alice'] }, models: ['m2'], limits: { requestsPerMinute: 6 } }, '2026-06-01T00:00:00Z'),
        quota('team', { subjects: { groups: ['team'] }, models: ['m2'], limits: { tokensPerHour: 8000 } }),
      ],
      secrets: [],
    },
    undefined,
  );
  const config = merged.snapshot!;

  it('names the TokenQuota of each field it set and the ConfigMap of the fields it left', () => {
    const e = config.explainLimits('alice', 'm1');
    // The same subject-wide entry: tokensPerMinute from the TokenQuota, tokensPerDay still the ConfigMap's.
    expect(e.tokensPerMinute.enforced).toEqual({ status: 'limited', value: 50, level: { kind: 'user', user: 'alice' }, source: TQ('alice-all') });
    expect(e.tokensPerDay.enforced).toEqual({ status: 'limited', value: 5000, level: { kind: 'user', user: 'alice' }, source: CM });
    // A shadow TokenQuota adds shadow values at user+model without touching what is enforced.
    expect(e.tokensPerDay.shadow).toEqual({ status: 'limited', value: 3000, level: { kind: 'user+model', user: 'alice', model: 'm1' }, source: TQ('alice-try') });
    expect(e.tokensPerMinute.shadow).toMatchObject({ value: 40, source: TQ('alice-try') });
    // The ConfigMap's own shadow entry at the same pair keeps its source.
    expect(e.requestsPerMinute.shadow).toEqual({ status: 'limited', value: 9, level: { kind: 'user+model', user: 'alice', model: 'm1' }, source: CM });
    expect(e.tokensPerHour.enforced).toEqual({ status: 'unset', value: null });
    expect(config.explainLimits('bob', 'm1').tokensPerDay.enforced).toEqual({ status: 'limited', value: 100000, level: { kind: 'defaults' }, source: CM });
    expect(config.source).toEqual(CM);
  });

  it('names the older TokenQuota where two claim the same pair, and group TokenQuotas by group', () => {
    expect(config.explainLimits('alice', 'm2').requestsPerMinute.enforced).toMatchObject({ value: 5, source: TQ('alice-m1-old') });
    const member = config.explainLimits('bob', 'm2', ['team']);
    expect(member.tokensPerHour.enforced).toEqual({ status: 'limited', value: 8000, level: { kind: 'group+model', group: 'team', model: 'm2' }, source: TQ('team') });
    expect(config.explainLimits('bob', 'm1', ['team']).tokensPerHour.enforced).toEqual({
      status: 'limited',
      value: 7000,
      level: { kind: 'group', group: 'team' },
      source: CM,
    });
  });

  it('an enforcing TokenQuota over a ConfigMap entry in shadow: the ConfigMap values stay shadow, with their source', () => {
    const result = mergeKubeState(
      {
        configMapText: 'models: { m: {} }\nusers: { eve: { limits: { tokensPerDay: 10, shadow: true } } }',
        tokenQuotas: [quota('eve', { subjects: { users: ['eve'] }, models: ['*'], limits: { tokensPerDay: 20 } })],
        secrets: [],
      },
      undefined,
    );
    const e = result.snapshot!.explainLimits('eve', 'm').tokensPerDay;
    expect(e.enforced).toMatchObject({ value: 20, source: TQ('eve') });
    // Without a ConfigMap reference the source is still the ConfigMap, by its key.
    expect(e.shadow).toMatchObject({ value: 10, source: { kind: 'configMap', key: 'limits.yaml' } });
    expect(e.shadow).not.toHaveProperty('source.name');
  });
});

const ADMIN_TOKEN = 'provenance-admin';
const ADMIN_HEADERS = { authorization: `Bearer ${ADMIN_TOKEN}` };
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

describe('GET /v1/limits/{user}', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({
      configYaml: `
defaults: { tokensPerMinute: 1000 }
models: { m1: {}, m2: {} }
users:
  alice: { limits: { tokensPerDay: 800, shadow: { tokensPerDay: 500 } }, models: { m2: { tokensPerMinute: null } } }
groups:
  a: { limits: { requestsPerMinute: 3 } }
  b: { limits: { requestsPerMinute: 4 } }
apiKeys:
  - { sha256: "${sha('alice-key')}", user: alice }
`,
      store: { kind: 'memory' },
    });
  });
  afterAll(() => t.close());

  const get = (path: string, headers: Record<string, string> = ADMIN) => fetch(`${t.http}${path}`, { headers });

  it('answers every configured model with each limit\'s enforced and shadow origin', async () => {
    const res = await get('/v1/limits/alice?groups=a&groups=b');
    expect(res.status).toBe(200);
    const body = (await res.json()) as { user: string; groups: string[]; source: unknown; models: Array<{ model: string; limits: LimitsExplanation }> };
    expect(body.user).toBe('alice');
    expect(body.groups).toEqual(['a', 'b']);
    expect(body.source).toEqual(FILE('test config'));
    expect(body.models.map((m) => m.model)).toEqual(['m1', 'm2']);
    const [m1, m2] = body.models.map((m) => m.limits);
    expect(m1!.tokensPerDay).toEqual({
      enforced: { status: 'limited', value: 800, level: { kind: 'user', user: 'alice' }, source: FILE('test config') },
      shadow: { status: 'limited', value: 500, level: { kind: 'user', user: 'alice' }, source: FILE('test config') },
    });
    expect(m1!.requestsPerMinute.enforced).toMatchObject({ value: 4, level: { kind: 'group', group: 'b' } });
    expect(m1!.tokensPerMinute.enforced).toMatchObject({ value: 1000, level: { kind: 'defaults' } });
    expect(m2!.tokensPerMinute.enforced).toEqual({ status: 'unlimited', value: null, level: { kind: 'user+model', user: 'alice', model: 'm2' }, source: FILE('test config') });
    expect(m2!.tokensPerMonth.enforced).toEqual({ status: 'unset', value: null });
  });

  it('answers one model with ?model=, 404 for a model not configured, and takes percent-encoded names', async () => {
    const one = (await (await get('/v1/limits/alice?model=m2')).json()) as { groups: string[]; models: Array<{ model: string }> };
    expect(one.models.map((m) => m.model)).toEqual(['m2']);
    expect(one.groups).toEqual([]);
    expect((await get('/v1/limits/alice?model=nope')).status).toBe(404);
    const proto = await get(`/v1/limits/${encodeURIComponent('__proto__')}?model=m1&groups=__proto__&groups=constructor`);
    expect(proto.status).toBe(200);
    const body = (await proto.json()) as { user: string; groups: string[]; models: Array<{ limits: LimitsExplanation }> };
    expect(body.user).toBe('__proto__');
    expect(body.groups).toEqual(['__proto__', 'constructor']);
    expect(body.models[0]!.limits.tokensPerMinute.enforced).toMatchObject({ value: 1000, level: { kind: 'defaults' } });
    expect((await get('/v1/limits/%E0%A4%A')).status).toBe(400);
  });

  it('is for the admin only: 401 without a token or with an unknown one, 403 with an API key (even the user\'s own)', async () => {
    const none = await get('/v1/limits/alice', {});
    expect(none.status).toBe(401);
    expect(await none.text()).not.toContain('tokensPerDay');
    expect((await get('/v1/limits/alice', { authorization: 'Bearer wrong' })).status).toBe(401);
    const key = await get('/v1/limits/alice', { authorization: 'Bearer alice-key' });
    expect(key.status).toBe(403);
    expect(await key.text()).not.toContain('tokensPerDay');
    expect((await fetch(`${t.http}/v1/limits/alice`, { method: 'POST', headers: ADMIN })).status).toBe(405);
  });

  it('has no reload function in an app started without one: 409, and still only for the admin', async () => {
    expect((await fetch(`${t.http}/v1/admin/reload`, { method: 'POST' })).status).toBe(401);
    expect((await fetch(`${t.http}/v1/admin/reload`, { method: 'POST', headers: { authorization: 'Bearer alice-key' } })).status).toBe(403);
    const res = await fetch(`${t.http}/v1/admin/reload`, { method: 'POST', headers: ADMIN });
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain('without a limits file');
  });
});

describe('POST /v1/admin/reload', () => {
  let dir: string;
  let path: string;
  let app: App | undefined;
  let base: string;

  const limitsFile = (aliceDay: number, extra = '') => `
admin: { tokenSha256: "${sha(ADMIN_TOKEN)}" }
tokenization: { workers: 0 }
defaults: { tokensPerMinute: 1000 }
models: { m: {} }
users:
  alice: { limits: { tokensPerDay: ${aliceDay} } }
${extra}`;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tw-reload-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  async function start(withReload = true) {
    path = join(dir, `limits-${Math.random().toString(36).slice(2)}.yaml`);
    await writeFile(path, limitsFile(100));
    app = await startApp({
      grpcAddr: '127.0.0.1:0',
      httpAddr: '127.0.0.1:0',
      config: await loadLimitsFile(path),
      store: { kind: 'memory' },
      logger: createLogger(process.env['TEST_LOG'] ?? 'silent'),
      ...(withReload ? { reloadConfig: () => loadLimitsFile(path) } : {}),
    });
    base = `http://127.0.0.1:${app.httpPort}`;
  }
  const reload = (headers: Record<string, string> = ADMIN_HEADERS) => fetch(`${base}/v1/admin/reload`, { method: 'POST', headers });
  const aliceDay = async () => {
    const body = (await (await fetch(`${base}/v1/limits/alice?model=m`, { headers: ADMIN_HEADERS })).json()) as { models: Array<{ limits: LimitsExplanation }> };
    return body.models[0]!.limits.tokensPerDay.enforced;
  };

  it('swaps in a changed file and answers what changed', async () => {
    await start();
    expect(await aliceDay()).toMatchObject({ value: 100, source: FILE(path) });
    await writeFile(path, limitsFile(200, 'groups: { "team.x": { limits: { tokensPerHour: 5 } } }'));
    const res = await reload();
    expect(res.status).toBe(200);
    const body = (await res.json()) as { reloaded: boolean; changed: string[]; changes: unknown[]; source: unknown };
    expect(body.reloaded).toBe(true);
    expect(body.changed).toEqual(['users.alice.limits.tokensPerDay', 'groups["team.x"]']);
    expect(body.changes).toEqual([
      { path: ['users', 'alice', 'limits', 'tokensPerDay'], before: 100, after: 200 },
      { path: ['groups', 'team.x'], after: { limits: { tokensPerHour: 5 } } },
    ]);
    expect(body.source).toEqual(FILE(path));
    expect(await aliceDay()).toMatchObject({ value: 200 });
    // Reloading an unchanged file changes nothing.
    expect(((await (await reload()).json()) as { changed: string[] }).changed).toEqual([]);
  });

  it('refuses an invalid file with the reason, 422, and keeps serving the old limits', async () => {
    await start();
    await writeFile(path, limitsFile(100).replace('tokensPerDay: 100', 'tokensPerDay: -5'));
    const invalid = await reload();
    expect(invalid.status).toBe(422);
    const body = (await invalid.json()) as { reloaded: boolean; error: { message: string; code: string } };
    expect(body.reloaded).toBe(false);
    expect(body.error.code).toBe('config_invalid');
    expect(body.error.message).toContain('users.alice.limits.tokensPerDay');
    expect(await aliceDay()).toMatchObject({ value: 100 });

    await writeFile(path, limitsFile(300, 'groups: { g: { models: { ghost: { tokensPerDay: 1 } } } }'));
    const unknownModel = await reload();
    expect(unknownModel.status).toBe(422);
    expect(((await unknownModel.json()) as { error: { message: string } }).error.message).toContain('model "ghost" is not listed under models');
    expect(await aliceDay()).toMatchObject({ value: 100 });

    await writeFile(path, 'defaults: [unclosed');
    const notYaml = await reload();
    expect(notYaml.status).toBe(422);
    expect(((await notYaml.json()) as { error: { message: string } }).error.message).toContain('not valid YAML');
    await rm(path);
    const missing = await reload();
    expect(missing.status).toBe(422);
    expect(((await missing.json()) as { error: { message: string } }).error.message).toContain('cannot read limits file');
    expect(await aliceDay()).toMatchObject({ value: 100 });
  });

  it('reloads only for the admin token', async () => {
    await start();
    await writeFile(path, limitsFile(999));
    expect((await reload({})).status).toBe(401);
    expect((await reload({ authorization: 'Bearer nope' })).status).toBe(401);
    expect((await fetch(`${base}/v1/admin/reload`, { headers: ADMIN_HEADERS })).status).toBe(405);
    expect(await aliceDay()).toMatchObject({ value: 100 });
    expect((await reload()).status).toBe(200);
    expect(await aliceDay()).toMatchObject({ value: 999 });
  });

  it('answers 403 on both endpoints when no admin token is configured', async () => {
    path = join(dir, 'no-admin.yaml');
    await writeFile(path, 'tokenization: { workers: 0 }\nmodels: { m: {} }');
    app = await startApp({
      grpcAddr: '127.0.0.1:0',
      httpAddr: '127.0.0.1:0',
      config: await loadLimitsFile(path),
      store: { kind: 'memory' },
      logger: createLogger('silent'),
      reloadConfig: () => loadLimitsFile(path),
    });
    base = `http://127.0.0.1:${app.httpPort}`;
    expect((await reload()).status).toBe(403);
    expect((await fetch(`${base}/v1/limits/alice`, { headers: ADMIN_HEADERS })).status).toBe(403);
  });

  it('App.reload (what SIGHUP runs) rejects a refused file and keeps the config', async () => {
    await start();
    await writeFile(path, 'nonsense: 1');
    await expect(app!.reload('signal')).rejects.toThrow(/nonsense/);
    expect(await aliceDay()).toMatchObject({ value: 100 });
  });
});
