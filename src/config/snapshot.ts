import type { EntryPart, LimitExplanation, LimitLevel, LimitOrigin, LimitsExplanation, LimitSource, SnapshotProvenance, SubjectKind } from './provenance.js';
import { LIMIT_NAMES, type LimitName, type LimitsFile, type LimitsInput, type SubjectLimits } from './schema.js';

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
  /**
   * Why each limit is what it is: per limit name, the enforced and the shadow value (exactly those of
   * limitsFor and shadowLimitsFor), each with the level that set it and its source (the file, the
   * ConfigMap, or a TokenQuota), or "set nowhere".
   */
  explainLimits(user: string, model: string, groups?: readonly string[]): LimitsExplanation;
  /** Where the configuration came from, as a whole (the file or the ConfigMap). */
  readonly source: LimitSource;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** `provenance` says where the file came from and which fields TokenQuotas set (default: a file named "limits file"). */
export function buildSnapshot(file: LimitsFile, provenance: SnapshotProvenance = { base: { kind: 'file', path: 'limits file' } }): ConfigSnapshot {
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
      return valuesOf(explain(explainedLevelsFor(user, model, memberOf)), 'enforced');
    },
    shadowLimitsFor(user: string, model: string, memberOf: readonly string[] = []): EffectiveLimits {
      return valuesOf(explain(explainedLevelsFor(user, model, memberOf)), 'shadow');
    },
    explainLimits(user: string, model: string, memberOf: readonly string[] = []): LimitsExplanation {
      return explain(explainedLevelsFor(user, model, memberOf));
    },
    source: Object.freeze({ ...provenance.base }),
  });
  return snapshot;

  /** The levels of a user's limits on a model, most specific first, each value with its level and source. */
  function explainedLevelsFor(user: string, model: string, memberOf: readonly string[]): Array<ExplainedLevel | undefined> {
    const userEntry = users.get(user);
    const memberGroups = [...new Set(memberOf)].flatMap((g) => {
      const entry = groups.get(g);
      return entry === undefined ? [] : [[g, entry] as const];
    });
    const level = (input: LimitsInput | undefined, where: LimitLevel, sourceOf: (part: EntryPart, name: LimitName) => LimitSource) =>
      explainedLevelOf(input, settings.shadow, where, sourceOf);
    const base = () => provenance.base;
    const layered = (kind: SubjectKind, subject: string, perModel: string | null) => (part: EntryPart, name: LimitName) =>
      provenance.fields?.get(kind, subject, perModel, part, name) ?? provenance.base;
    return [
      level(modelLimits(userEntry, model), { kind: 'user+model', user, model }, layered('user', user, model)),
      level(userEntry?.limits, { kind: 'user', user }, layered('user', user, null)),
      mostGenerousExplained(memberGroups.map(([g, entry]) => level(modelLimits(entry, model), { kind: 'group+model', group: g, model }, layered('group', g, model)))),
      mostGenerousExplained(memberGroups.map(([g, entry]) => level(entry.limits, { kind: 'group', group: g }, layered('group', g, null)))),
      level(models.get(model)?.limits, { kind: 'model', model }, base),
      level(settings.defaults, { kind: 'defaults' }, base),
    ];
  }
}

function modelLimits(subject: SubjectLimits | undefined, model: string): LimitsInput | undefined {
  return new Map(Object.entries(subject?.models ?? {})).get(model);
}

/** A value of one level, with where it was set. */
interface Placed {
  readonly value: number | null;
  readonly level: LimitLevel;
  readonly source: LimitSource;
}

/** One level of the configuration, its limits split (as splitShadow does) into those that deny and those in shadow mode, each placed. */
interface ExplainedLevel {
  readonly enforced: ReadonlyMap<LimitName, Placed>;
  readonly shadow: ReadonlyMap<LimitName, Placed>;
}

function explainedLevelOf(
  input: LimitsInput | undefined,
  everythingInShadow: boolean,
  level: LimitLevel,
  sourceOf: (part: EntryPart, name: LimitName) => LimitSource,
): ExplainedLevel | undefined {
  if (input === undefined) return undefined;
  const enforced = new Map<LimitName, Placed>();
  const shadow = new Map<LimitName, Placed>();
  const tried = typeof input.shadow === 'object' ? input.shadow : {};
  const allShadow = everythingInShadow || input.shadow === true;
  for (const name of LIMIT_NAMES) {
    const top = input[name];
    const trial = tried[name];
    // As splitShadow: with everything in shadow, a field of the shadow object wins over the top-level one.
    if (allShadow) {
      if (trial !== undefined) shadow.set(name, { value: trial, level, source: sourceOf('shadow', name) });
      else if (top !== undefined) shadow.set(name, { value: top, level, source: sourceOf('enforced', name) });
    } else {
      if (top !== undefined) enforced.set(name, { value: top, level, source: sourceOf('enforced', name) });
      if (trial !== undefined) shadow.set(name, { value: trial, level, source: sourceOf('shadow', name) });
    }
  }
  return { enforced, shadow };
}

/**
 * One level from several groups' settings: per field, the most generous (null, unlimited, beats any
 * number), separately for enforced and shadow limits, keeping which group gave it (the first listed on
 * a tie). Belonging to one more group never lowers a member's quota.
 */
function mostGenerousExplained(levels: ReadonlyArray<ExplainedLevel | undefined>): ExplainedLevel | undefined {
  const present = levels.filter((l) => l !== undefined);
  if (present.length <= 1) return present[0];
  const combine = (parts: ReadonlyArray<ReadonlyMap<LimitName, Placed>>) => {
    const out = new Map<LimitName, Placed>();
    for (const name of LIMIT_NAMES) {
      let best: Placed | undefined;
      for (const part of parts) {
        const candidate = part.get(name);
        if (candidate === undefined) continue;
        if (best === undefined || (best.value !== null && (candidate.value === null || candidate.value > best.value))) best = candidate;
      }
      if (best !== undefined) out.set(name, best);
    }
    return out;
  };
  return { enforced: combine(present.map((l) => l.enforced)), shadow: combine(present.map((l) => l.shadow)) };
}

/**
 * Field by field: the first level (most specific first) with an enforced value decides the enforced
 * limit; the first level with a shadow value decides the shadow limit, unless a more specific level
 * enforces the field. Each keeps where it came from.
 */
function explain(levels: ReadonlyArray<ExplainedLevel | undefined>): LimitsExplanation {
  const origin = (placed: Placed | undefined): LimitOrigin =>
    placed === undefined
      ? Object.freeze({ status: 'unset', value: null })
      : placed.value === null
        ? Object.freeze({ status: 'unlimited', value: null, level: placed.level, source: placed.source })
        : Object.freeze({ status: 'limited', value: placed.value, level: placed.level, source: placed.source });
  const out = {} as Record<LimitName, LimitExplanation>;
  for (const name of LIMIT_NAMES) {
    const enforced = levels.map((level) => level?.enforced.get(name)).find((v) => v !== undefined);
    let shadow: Placed | undefined;
    for (const level of levels) {
      shadow = level?.shadow.get(name);
      if (shadow !== undefined || level?.enforced.has(name)) break;
    }
    out[name] = Object.freeze({ enforced: origin(enforced), shadow: origin(shadow) });
  }
  return Object.freeze(out);
}

/** The numeric limits of one part of an explanation (unset and unlimited are absent). */
function valuesOf(explanation: LimitsExplanation, part: 'enforced' | 'shadow'): EffectiveLimits {
  const out: Partial<Record<LimitName, number>> = {};
  for (const name of LIMIT_NAMES) {
    const origin = explanation[name][part];
    if (origin.status === 'limited') out[name] = origin.value;
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
