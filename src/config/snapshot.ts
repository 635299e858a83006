import { LIMIT_NAMES, splitShadow, type LimitName, type LimitsFile, type LimitsInput, type LimitValues, type SubjectLimits } from './schema.js';

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
  /** The limits that deny. Most specific first: user+model, user, group+model, group, model, defaults (field by field). */
  limitsFor(user: string, model: string, groups?: readonly string[]): EffectiveLimits;
  /** The limits in shadow mode: those a more specific level than any enforced one puts in shadow. */
  shadowLimitsFor(user: string, model: string, groups?: readonly string[]): EffectiveLimits;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function buildSnapshot(file: LimitsFile): ConfigSnapshot {
  const { apiKeys, ...rest } = file;
  const settings = deepFreeze(copyKeepingPrototypes(rest));
  // Maps, not object lookups: a caller named "__proto__" or "constructor" must find nothing.
  const models = new Map(Object.entries(settings.models));
  const users = new Map(Object.entries(settings.users));
  const groups = new Map(Object.entries(settings.groups));
  for (const [kind, subjects] of [['users', users], ['groups', groups]] as const) {
    for (const [subject, entry] of subjects) {
      for (const model of Object.keys(entry.models ?? {})) {
        if (!models.has(model)) {
          throw new ConfigError(`${kind}.${subject}.models.${model}: model "${model}" is not listed under models`);
        }
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

  const snapshot: ConfigSnapshot = Object.freeze({
    settings,
    apiKeys: Object.freeze(digests),
    modelNames: Object.freeze([...models.keys()]),
    hasModel: (model: string) => models.has(model),
    limitsFor(user: string, model: string, memberOf: readonly string[] = []): EffectiveLimits {
      return enforcedLimits(levelsFor(user, model, memberOf));
    },
    shadowLimitsFor(user: string, model: string, memberOf: readonly string[] = []): EffectiveLimits {
      return shadowLimits(levelsFor(user, model, memberOf));
    },
  });
  return snapshot;

  function levelsFor(user: string, model: string, memberOf: readonly string[]): Array<Level | undefined> {
    const userEntry = users.get(user);
    const groupEntries = memberOf.map((g) => groups.get(g)).filter((g) => g !== undefined);
    const level = (input: LimitsInput | undefined) => levelOf(input, settings.shadow);
    return [
      level(modelLimits(userEntry, model)),
      level(userEntry?.limits),
      mostGenerous(groupEntries.map((g) => level(modelLimits(g, model)))),
      mostGenerous(groupEntries.map((g) => level(g.limits))),
      level(models.get(model)?.limits),
      level(settings.defaults),
    ];
  }
}

function modelLimits(subject: SubjectLimits | undefined, model: string): LimitsInput | undefined {
  return new Map(Object.entries(subject?.models ?? {})).get(model);
}

/** One level of the configuration, its limits split into those that deny and those in shadow mode. */
interface Level {
  readonly enforced: LimitValues;
  readonly shadow: LimitValues;
}

function levelOf(input: LimitsInput | undefined, everythingInShadow: boolean): Level | undefined {
  return input === undefined ? undefined : splitShadow(input, everythingInShadow);
}

/**
 * One level from several groups' settings: per field, the most generous (null, unlimited, beats any
 * number), separately for enforced and shadow limits. Belonging to one more group never lowers a
 * member's quota.
 */
function mostGenerous(levels: ReadonlyArray<Level | undefined>): Level | undefined {
  const present = levels.filter((l) => l !== undefined);
  if (present.length <= 1) return present[0];
  const combine = (parts: readonly LimitValues[]) => {
    const out: LimitValues = {};
    for (const name of LIMIT_NAMES) {
      const values = parts.map((l) => l[name]).filter((v) => v !== undefined);
      if (values.length > 0) out[name] = values.includes(null) ? null : Math.max(...(values as number[]));
    }
    return out;
  };
  return { enforced: combine(present.map((l) => l.enforced)), shadow: combine(present.map((l) => l.shadow)) };
}

/** Field by field, the first level (most specific first) with an enforced value decides it; null means unlimited. */
function enforcedLimits(levels: ReadonlyArray<Level | undefined>): EffectiveLimits {
  const out: Partial<Record<LimitName, number>> = {};
  for (const name of LIMIT_NAMES) {
    const value = levels.map((level) => level?.enforced[name]).find((v) => v !== undefined);
    if (value !== undefined && value !== null) out[name] = value;
  }
  return Object.freeze(out);
}

/** Field by field, the first level with a shadow value decides it, unless a more specific level enforces the field. */
function shadowLimits(levels: ReadonlyArray<Level | undefined>): EffectiveLimits {
  const out: Partial<Record<LimitName, number>> = {};
  for (const name of LIMIT_NAMES) {
    for (const level of levels) {
      const shadow = level?.shadow[name];
      if (shadow !== undefined) {
        if (shadow !== null) out[name] = shadow;
        break;
      }
      if (level?.enforced[name] !== undefined) break;
    }
  }
  return Object.freeze(out);
}

/** A deep copy of parsed settings; unlike structuredClone, it leaves name tables without a prototype. */
function copyKeepingPrototypes<T>(value: T): T {
  if (Array.isArray(value)) return value.map(copyKeepingPrototypes) as T;
  if (value === null || typeof value !== 'object') return value;
  const copy = Object.fromEntries(Object.entries(value).map(([key, v]) => [key, copyKeepingPrototypes(v)]));
  return Object.setPrototypeOf(copy, Object.getPrototypeOf(value)) as T;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
