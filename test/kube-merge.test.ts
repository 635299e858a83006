import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { mergeKubeState, type ApiKeySecret } from '../src/kube/merge.js';
import type { TokenQuotaObject } from '../src/kube/token-quota.js';

const CONFIG_MAP = `
defaults: { tokensPerMinute: 1000 }
models: { m1: {}, m2: {} }
users: { alice: { models: { m1: { tokensPerDay: 5000 } } } }
`;
const quota = (name: string, spec: unknown, created = '2026-11-01T00:00:00Z'): TokenQuotaObject => ({
  metadata: { name, namespace: 'llm', generation: 1, creationTimestamp: created },
  spec,
});
const secret = (name: string, user: string | undefined, data: Record<string, string>): ApiKeySecret => ({
  metadata: { name, namespace: 'llm', annotations: user ? { 'tokenwarden.dev/user': user } : {} },
  data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
});

describe('merging the ConfigMap, TokenQuotas and Secrets', () => {
  it('layers TokenQuota limits over the ConfigMap, field by field, for users and groups', () => {
    const result = mergeKubeState(
      {
        configMapText: CONFIG_MAP,
        tokenQuotas: [
          quota('alice-m1', { subjects: { users: ['alice'] }, models: ['m1'], limits: { tokensPerMinute: 50 } }),
          quota('team', { subjects: { groups: ['team-a'] }, models: ['*'], limits: { requestsPerMinute: 7 } }),
        ],
        secrets: [],
      },
      undefined,
    );
    expect(result.snapshot!.limitsFor('alice', 'm1')).toEqual({ tokensPerMinute: 50, tokensPerDay: 5000 });
    expect(result.snapshot!.limitsFor('bob', 'm2', ['team-a'])).toEqual({ tokensPerMinute: 1000, requestsPerMinute: 7 });
    expect(result.verdicts.get('llm/alice-m1')).toMatchObject({ ready: true, reason: 'Applied', conflicts: [] });
  });

  it('reports invalid specs and unknown models precisely, and leaves them out', () => {
    const result = mergeKubeState(
      {
        configMapText: CONFIG_MAP,
        tokenQuotas: [
          quota('no-subject', { subjects: {}, models: ['m1'], limits: { tokensPerMinute: 1 } }),
          quota('negative', { subjects: { users: ['x'] }, models: ['m1'], limits: { tokensPerDay: -1 } }),
          quota('no-limit', { subjects: { users: ['x'] }, models: ['m1'], limits: {} }),
          quota('star', { subjects: { users: ['x'] }, models: ['*', 'm1'], limits: { tokensPerDay: 1 } }),
          quota('order', { subjects: { users: ['x'] }, models: ['m1'], limits: { tokensPerMinute: 10, tokensPerHour: 5 } }),
          quota('ghost', { subjects: { users: ['x'] }, models: ['m9'], limits: { tokensPerDay: 1 } }),
        ],
        secrets: [],
      },
      undefined,
    );
    const reason = (name: string) => result.verdicts.get(`llm/${name}`);
    expect(reason('no-subject')).toMatchObject({ ready: false, reason: 'InvalidSpec', message: 'spec.subjects: at least one user or group is required' });
    expect(reason('negative')).toMatchObject({ reason: 'InvalidSpec', message: expect.stringContaining('spec.limits.tokensPerDay') });
    expect(reason('no-limit')!.message).toBe('spec.limits: at least one limit is required');
    expect(reason('star')!.message).toContain('"*" must be the only entry');
    expect(reason('order')!.message).toContain('tokensPerMinute must not exceed tokensPerHour');
    expect(reason('ghost')).toMatchObject({ reason: 'UnknownModel', message: 'model "m9" not configured in the ConfigMap' });
    expect(result.snapshot!.limitsFor('x', 'm1')).toEqual({ tokensPerMinute: 1000 });
  });

  it('gives users named like Object.prototype members (toString, hasOwnProperty) exactly their own limits', () => {
    const configMapText = `
defaults: { tokensPerMinute: 1000 }
models: { m1: {}, m2: {} }
groups: { valueOf: { limits: { tokensPerHour: 70000 } } }
users: { toString: { limits: { tokensPerDay: 7000 } } }
`;
    const quotas = [
      quota('to-string', { subjects: { users: ['toString'] }, models: ['m1'], limits: { tokensPerMinute: 11 } }),
      quota('has-own', { subjects: { users: ['hasOwnProperty'] }, models: ['*'], limits: { tokensPerMinute: 22 } }),
    ];
    const merged = (tokenQuotas: TokenQuotaObject[]) => mergeKubeState({ configMapText, tokenQuotas, secrets: [] }, undefined).snapshot!;
    const withQuotas = merged(quotas);
    expect(withQuotas.limitsFor('toString', 'm1')).toEqual({ tokensPerMinute: 11, tokensPerDay: 7000 });
    expect(withQuotas.limitsFor('toString', 'm2')).toEqual({ tokensPerMinute: 1000, tokensPerDay: 7000 });
    expect(withQuotas.limitsFor('hasOwnProperty', 'm2')).toEqual({ tokensPerMinute: 22 });
    expect(withQuotas.limitsFor('hasOwnProperty', 'm1', ['valueOf'])).toEqual({ tokensPerMinute: 22, tokensPerHour: 70000 });
    for (const other of ['bob', 'valueOf', 'constructor', '__proto__']) expect(withQuotas.limitsFor(other, 'm1')).toEqual({ tokensPerMinute: 1000 });
    // Nothing lingers once the TokenQuotas are gone.
    const without = merged([]);
    expect(without.limitsFor('toString', 'm1')).toEqual({ tokensPerMinute: 1000, tokensPerDay: 7000 });
    expect(without.limitsFor('hasOwnProperty', 'm1')).toEqual({ tokensPerMinute: 1000 });
  });

  it('refuses TokenQuotas naming __proto__, constructor or prototype, and nobody else is affected', () => {
    const result = mergeKubeState(
      {
        configMapText: CONFIG_MAP,
        tokenQuotas: [
          quota('proto', { subjects: { users: ['__proto__'] }, models: ['*'], limits: { tokensPerMinute: 1 } }),
          quota('ctor', { subjects: { users: ['bob'], groups: ['constructor'] }, models: ['m1'], limits: { tokensPerMinute: 2 } }),
          quota('model', { subjects: { users: ['bob'] }, models: ['prototype'], limits: { tokensPerMinute: 3 } }),
        ],
        secrets: [],
      },
      undefined,
    );
    expect(result.verdicts.get('llm/proto')).toMatchObject({ ready: false, reason: 'InvalidSpec', message: 'spec.subjects.users.0: "__proto__" is reserved and cannot be a user name' });
    expect(result.verdicts.get('llm/ctor')).toMatchObject({ ready: false, reason: 'InvalidSpec', message: 'spec.subjects.groups.0: "constructor" is reserved and cannot be a group name' });
    expect(result.verdicts.get('llm/model')).toMatchObject({ ready: false, reason: 'InvalidSpec', message: 'spec.models.0: "prototype" is reserved and cannot be a model name' });
    expect(result.snapshot!.limitsFor('alice', 'm1')).toEqual({ tokensPerMinute: 1000, tokensPerDay: 5000 });
    expect(result.snapshot!.limitsFor('bob', 'm1', ['constructor'])).toEqual({ tokensPerMinute: 1000 });
  });

  it('resolves conflicts by age and reports them on both objects', () => {
    const result = mergeKubeState(
      {
        configMapText: CONFIG_MAP,
        tokenQuotas: [
          quota('newer', { subjects: { users: ['bob', 'carol'] }, models: ['m1'], limits: { tokensPerMinute: 999 } }, '2026-11-20T00:00:00Z'),
          quota('older', { subjects: { users: ['bob'] }, models: ['m1'], limits: { tokensPerMinute: 10 } }, '2026-11-02T00:00:00Z'),
        ],
        secrets: [],
      },
      undefined,
    );
    expect(result.snapshot!.limitsFor('bob', 'm1').tokensPerMinute).toBe(10);
    expect(result.snapshot!.limitsFor('carol', 'm1').tokensPerMinute).toBe(999);
    expect(result.verdicts.get('llm/newer')).toMatchObject({
      ready: true,
      reason: 'PartiallyApplied',
      conflicts: ['user "bob" on model "m1": overridden by llm/older (older)'],
    });
    expect(result.verdicts.get('llm/older')).toMatchObject({
      ready: true,
      reason: 'Applied',
      conflicts: ['user "bob" on model "m1": also claimed by llm/newer, which yields'],
    });
  });

  it('keeps the last good ConfigMap when the current one is invalid, and reports it', () => {
    const result = mergeKubeState({ configMapText: 'defaults: { tokensPerMinute: -5 }', tokenQuotas: [], secrets: [] }, CONFIG_MAP);
    expect(result.configMapError).toMatch(/defaults\.tokensPerMinute/);
    expect(result.snapshot!.limitsFor('z', 'm1')).toEqual({ tokensPerMinute: 1000 });
    const none = mergeKubeState({ configMapText: undefined, tokenQuotas: [quota('q', {})], secrets: [] }, undefined);
    expect(none.snapshot).toBeUndefined();
    expect(none.verdicts.get('llm/q')).toMatchObject({ ready: false, reason: 'ConfigUnavailable' });
  });

  it('takes API keys from Secrets, hashing plain keys, refusing bad entries and stolen keys', () => {
    const hash = createHash('sha256').update('hashed-key').digest('hex');
    const result = mergeKubeState(
      {
        configMapText: CONFIG_MAP,
        tokenQuotas: [],
        secrets: [
          secret('dana-keys', 'dana@example.com', { primary: 'plain-key-1', 'backup.sha256': hash }),
          secret('thief', 'mallory', { copy: 'plain-key-1', 'bad.sha256': 'nothex' }),
          secret('anonymous', undefined, { k: 'x' }),
        ],
      },
      undefined,
    );
    const users = result.snapshot!.apiKeys.map((k) => [k.digest.toString('hex'), k.user]);
    expect(users).toContainEqual([createHash('sha256').update('plain-key-1').digest('hex'), 'dana@example.com']);
    expect(users).toContainEqual([hash, 'dana@example.com']);
    expect(users.filter(([, u]) => u === 'mallory')).toEqual([]);
    expect(result.rejectedSecrets).toEqual([
      'llm/thief: entry copy is a key already given to another user',
      'llm/thief: entry bad.sha256 is not a sha256 hex digest',
      'llm/anonymous: no valid tokenwarden.dev/user annotation',
    ]);
    expect(JSON.stringify(result)).not.toContain('plain-key-1');
  });
});
