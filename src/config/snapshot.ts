import { LIMIT_NAMES, type LimitName, type LimitsFile, type LimitsInput } from './schema.js';

/** Effective limits for one user and model; an absent field means unlimited. */
export type EffectiveLimits = Readonly<Partial<Record<LimitName, number>>>;

/**
 * One immutable view of the configuration. The quota engine reads whichever snapshot is current
 * when a request arrives; a new configuration is a new snapshot, swapped in whole.
 */
export interface ConfigSnapshot {
  readonly settings: Readonly<Omit<LimitsFile, 'apiKeys'>>;
  /** API keys as sha256 digests; the keys themselves are never held. */
  readonly apiKeys: ReadonlyArray<{ readonly digest: Buffer; readonly user: string }>;
  readonly modelNames: readonly string[];
  hasModel(model: string): boolean;
  limitsFor(user: string, model: string): EffectiveLimits;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function buildSnapshot(file: LimitsFile): ConfigSnapshot {
  const { apiKeys, ...rest } = file;
  const settings = deepFreeze(structuredClone(rest));
  // Maps, not object lookups: a caller named "__proto__" or "constructor" must find nothing.
  const models = new Map(Object.entries(settings.models));
  const users = new Map(Object.entries(settings.users));
  for (const [user, entry] of users) {
    for (const model of Object.keys(entry.models ?? {})) {
      if (!models.has(model)) {
        throw new ConfigError(`users.${user}.models.${model}: model "${model}" is not listed under models`);
      }
    }
  }
  if (settings.defaultModel !== undefined && !models.has(settings.defaultModel)) {
    throw new ConfigError(`defaultModel: model "${settings.defaultModel}" is not listed under models`);
  }
  const apiKeyUsers = new Map<string, string>();
  for (const [i, key] of apiKeys.entries()) {
    const owner = apiKeyUsers.get(key.sha256);
    if (owner !== undefined && owner !== key.user) {
      throw new ConfigError(`apiKeys[${i}]: the same key hash is given to both "${owner}" and "${key.user}"`);
    }
    apiKeyUsers.set(key.sha256, key.user);
  }
  const digests = [...apiKeyUsers].map(([hex, user]) => Object.freeze({ digest: Buffer.from(hex, 'hex'), user }));

  return Object.freeze({
    settings,
    apiKeys: Object.freeze(digests),
    modelNames: Object.freeze([...models.keys()]),
    hasModel: (model: string) => models.has(model),
    limitsFor(user: string, model: string): EffectiveLimits {
      const userEntry = users.get(user);
      const userModels = new Map(Object.entries(userEntry?.models ?? {}));
      return mergeLimits([userModels.get(model), userEntry?.limits, models.get(model)?.limits, settings.defaults]);
    },
  });
}

/** Field by field, the first level (most specific first) that mentions a limit decides it; null means unlimited. */
function mergeLimits(levels: ReadonlyArray<LimitsInput | undefined>): EffectiveLimits {
  const out: Partial<Record<LimitName, number>> = {};
  for (const name of LIMIT_NAMES) {
    for (const level of levels) {
      const value = level?.[name];
      if (value === undefined) continue;
      if (value !== null) out[name] = value;
      break;
    }
  }
  return Object.freeze(out);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
