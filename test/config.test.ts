import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseLimitsYaml } from '../src/config/load.js';
import { ConfigError } from '../src/config/snapshot.js';

const HASH = 'a'.repeat(64);

describe('limits configuration', () => {
  it('resolves limits field by field: user+model > user > model > defaults, null meaning unlimited', () => {
    const config = parseLimitsYaml(
      `
defaults: { tokensPerMinute: 10000, tokensPerDay: 500000, requestsPerMinute: 60, maxConcurrentRequests: 5 }
models:
  llama-3.2-1b: { limits: { tokensPerMinute: 20000, tokensPerHour: 90000 } }
  korean-llama: {}
users:
  alice:
    limits: { tokensPerDay: 100000, requestsPerMinute: null }
    models: { llama-3.2-1b: { tokensPerMinute: 3000 } }
`,
      'test',
    );
    expect(config.limitsFor('alice', 'llama-3.2-1b')).toEqual({
      tokensPerMinute: 3000,
      tokensPerHour: 90000,
      tokensPerDay: 100000,
      maxConcurrentRequests: 5,
    });
    expect(config.limitsFor('alice', 'korean-llama')).toEqual({ tokensPerMinute: 10000, tokensPerDay: 100000, maxConcurrentRequests: 5 });
    expect(config.limitsFor('bob', 'llama-3.2-1b')).toEqual({
      tokensPerMinute: 20000,
      tokensPerHour: 90000,
      tokensPerDay: 500000,
      requestsPerMinute: 60,
      maxConcurrentRequests: 5,
    });
    expect(config.limitsFor('__proto__', 'korean-llama')).toEqual(config.limitsFor('bob', 'korean-llama'));
  });

  it('puts group limits between user and model limits, the most generous group winning per field', () => {
    const config = parseLimitsYaml(
      `
defaults: { tokensPerMinute: 100, tokensPerDay: 1000 }
models: { m: { limits: { requestsPerMinute: 5 } } }
groups:
  free: { limits: { tokensPerMinute: 200, requestsPerMinute: 10 } }
  pro: { limits: { tokensPerMinute: 5000 }, models: { m: { tokensPerDay: null } } }
users:
  vip: { models: { m: { tokensPerMinute: 9 } } }
`,
      'test',
    );
    expect(config.limitsFor('x', 'm', ['free'])).toEqual({ tokensPerMinute: 200, tokensPerDay: 1000, requestsPerMinute: 10 });
    expect(config.limitsFor('x', 'm', ['free', 'pro'])).toEqual({ tokensPerMinute: 5000, requestsPerMinute: 10 });
    expect(config.limitsFor('vip', 'm', ['pro'])).toEqual({ tokensPerMinute: 9, requestsPerMinute: 5 });
    expect(config.limitsFor('x', 'm', ['unknown'])).toEqual({ tokensPerMinute: 100, tokensPerDay: 1000, requestsPerMinute: 5 });
  });

  it('keeps the snapshot immutable', () => {
    const config = parseLimitsYaml('defaults: { tokensPerMinute: 5 }\nmodels: { m: {} }', 'test');
    expect(() => {
      (config.settings.defaults as { tokensPerMinute: number }).tokensPerMinute = 99;
    }).toThrow();
    expect(config.limitsFor('x', 'm').tokensPerMinute).toBe(5);
  });

  it.each([
    ['defaults: [', /not valid YAML/],
    ['defaults: { tokensPerMinute: -1 }', /defaults\.tokensPerMinute/],
    ['defaults: { tokensPerMinute: 1.5 }', /defaults\.tokensPerMinute/],
    ['defaults: { tokensPerMinit: 5 }', /tokensPerMinit/],
    ['apiKeys: [ { sha256: "plain-key", user: a } ]', /apiKeys\.0\.sha256: must be the 64-character hex sha256/],
    ['models: { m: {} }\nusers: { a: { models: { other: { tokensPerDay: 1 } } } }', /model "other" is not listed/],
    ['defaultModel: ghost', /model "ghost" is not listed/],
    ['dailyReset: { timeZone: Mars/Olympus }', /dailyReset\.timeZone: not an IANA time zone/],
    [`apiKeys: [ { sha256: "${HASH}", user: a }, { sha256: "${HASH}", user: b } ]`, /same key hash is given to both/],
    ['users: { __proto__: { limits: { tokensPerDay: 1 } } }', /users\.__proto__: "__proto__" is reserved and cannot be a user name/],
    ['users: { constructor: {} }', /users\.constructor: "constructor" is reserved and cannot be a user name/],
    ['groups: { __proto__: { limits: { tokensPerDay: 1 } } }', /groups\.__proto__: "__proto__" is reserved and cannot be a group name/],
    ['groups: { prototype: {} }', /groups\.prototype: "prototype" is reserved and cannot be a group name/],
    ['models: { constructor: {} }', /models\.constructor: "constructor" is reserved and cannot be a model name/],
    ['models: { m: {} }\nusers: { a: { models: { __proto__: { tokensPerDay: 1 } } } }', /users\.a\.models\.__proto__: "__proto__" is reserved and cannot be a model name/],
  ])('rejects %j with a clear message', (yaml, message) => {
    expect(() => parseLimitsYaml(yaml, 'limits.yaml')).toThrow(ConfigError);
    expect(() => parseLimitsYaml(yaml, 'limits.yaml')).toThrow(message);
  });

  it('accepts the shipped example with two models, two users and hashed keys', () => {
    const config = parseLimitsYaml(readFileSync('config/limits.yaml', 'utf8'), 'config/limits.yaml');
    expect(config.modelNames).toEqual(['llama-3.2-1b', 'korean-llama']);
    expect(config.apiKeys.map((k) => k.user)).toEqual(['alice', 'bob']);
    expect(config.limitsFor('alice', 'llama-3.2-1b').tokensPerMinute).toBe(3000);
  });
});
