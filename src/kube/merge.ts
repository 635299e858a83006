import { createHash } from 'node:crypto';
import { parseLimitsFile, snapshotFrom } from '../config/load.js';
import { FieldSources, type LimitSource } from '../config/provenance.js';
import { LIMIT_NAMES, nameTable, splitShadow, type LimitsFile, type LimitsInput } from '../config/schema.js';
import type { ConfigSnapshot } from '../config/snapshot.js';
import { objectKey, parseTokenQuotaSpec, type TokenQuotaObject } from './token-quota.js';

/** A Secret carrying API keys (label-selected); `data` values are base64 as the API returns them. */
export interface ApiKeySecret {
  metadata?: { name?: string; namespace?: string; annotations?: Record<string, string>; creationTimestamp?: string | Date };
  data?: Record<string, string>;
}

/** The annotation naming the user a Secret's keys belong to. */
export const SECRET_USER_ANNOTATION = 'tokenwarden.dev/user';

export interface KubeState {
  /** The ConfigMap's limits.yaml; undefined when the ConfigMap (or the key) is missing. */
  readonly configMapText: string | undefined;
  readonly tokenQuotas: readonly TokenQuotaObject[];
  readonly secrets: readonly ApiKeySecret[];
  /** Which ConfigMap the text came from, for the limits' provenance (explainLimits); the key defaults to limits.yaml. */
  readonly configMap?: { readonly namespace?: string; readonly name?: string; readonly key?: string };
}

/** What the controller reports in a TokenQuota's status. */
export interface QuotaVerdict {
  readonly ready: boolean;
  readonly reason: 'Applied' | 'PartiallyApplied' | 'InvalidSpec' | 'UnknownModel' | 'Conflict' | 'ConfigUnavailable';
  readonly message: string;
  /** Other TokenQuotas it conflicts with, and how; empty when there is no conflict. */
  readonly conflicts: readonly string[];
}

export interface MergeResult {
  /** The snapshot to enforce, or undefined when there is no valid ConfigMap to build on. */
  readonly snapshot: ConfigSnapshot | undefined;
  readonly configMapError: string | undefined;
  /** The ConfigMap text the snapshot was built on (the last good one when the current is invalid). */
  readonly configMapTextUsed: string | undefined;
  readonly verdicts: ReadonlyMap<string, QuotaVerdict>;
  readonly rejectedSecrets: readonly string[];
}

/**
 * Merges the ConfigMap (defaults, models, tokenizers, users), the TokenQuotas and the API-key
 * Secrets into one snapshot. An invalid object never disables the others: an invalid ConfigMap
 * leaves the last good one in force, an invalid TokenQuota or Secret is left out and reported.
 *
 * TokenQuota entries override the ConfigMap's for the same subject and model, field by field.
 * When TokenQuotas claim the same subject and model, the oldest one (creationTimestamp, then
 * namespace/name) wins that pair and the younger one applies only to its other pairs; both report it.
 */
export function mergeKubeState(state: KubeState, lastGoodConfigMapText: string | undefined): MergeResult {
  let configMapError: string | undefined;
  let base: LimitsFile | undefined;
  let textUsed: string | undefined;
  for (const text of [state.configMapText, lastGoodConfigMapText]) {
    if (text === undefined) continue;
    try {
      base = parseLimitsFile(text, 'ConfigMap limits.yaml');
      snapshotFrom(base, 'ConfigMap limits.yaml');
      textUsed = text;
      break;
    } catch (err) {
      configMapError ??= (err as Error).message;
      base = undefined;
    }
  }
  if (state.configMapText === undefined) configMapError = 'the ConfigMap (key limits.yaml) does not exist';

  const verdicts = new Map<string, QuotaVerdict>();
  if (base === undefined) {
    for (const quota of state.tokenQuotas) {
      verdicts.set(objectKey(quota), {
        ready: false,
        reason: 'ConfigUnavailable',
        message: `not applied: no valid limits ConfigMap (${configMapError})`,
        conflicts: [],
      });
    }
    return { snapshot: undefined, configMapError, configMapTextUsed: undefined, verdicts, rejectedSecrets: [] };
  }

  // `base` was parsed afresh above (the validation snapshot copied it), so it is ours to extend.
  const fields = new FieldSources();
  applyTokenQuotas(base, state.tokenQuotas, verdicts, fields);
  const rejectedSecrets = applySecrets(base, state.secrets);
  const { namespace, name, key } = state.configMap ?? {};
  const stale = state.configMapText === textUsed ? undefined : configMapError;
  const configMapSource: LimitSource = {
    kind: 'configMap',
    key: key ?? 'limits.yaml',
    ...(namespace === undefined ? {} : { namespace }),
    ...(name === undefined ? {} : { name }),
    // An operator reading the ConfigMap finds other text than is enforced: provenance says why.
    ...(stale === undefined ? {} : { lastGood: { reason: stale } }),
  };
  return {
    snapshot: snapshotFrom(base, 'Kubernetes configuration', { base: configMapSource, fields }),
    configMapError: stale,
    configMapTextUsed: textUsed,
    verdicts,
    rejectedSecrets,
  };
}

/** Lays the TokenQuotas over `file`, recording in `fields` which TokenQuota set each field. */
function applyTokenQuotas(file: LimitsFile, quotas: readonly TokenQuotaObject[], verdicts: Map<string, QuotaVerdict>, fields: FieldSources): void {
  const owners = new Map<string, string>();
  const conflicts = new Map<string, string[]>();
  const note = (key: string, text: string) => conflicts.set(key, [...(conflicts.get(key) ?? []), text]);
  const models = new Set(Object.keys(file.models));

  for (const quota of [...quotas].sort(olderFirst)) {
    const key = objectKey(quota);
    const parsed = parseTokenQuotaSpec(quota.spec);
    if ('error' in parsed) {
      verdicts.set(key, { ready: false, reason: 'InvalidSpec', message: parsed.error, conflicts: [] });
      continue;
    }
    const { spec } = parsed;
    const source: LimitSource = { kind: 'tokenQuota', namespace: quota.metadata?.namespace ?? '', name: quota.metadata?.name ?? '' };
    const part = spec.shadow === true ? 'shadow' : 'enforced';
    const setNames = LIMIT_NAMES.filter((limit) => spec.limits[limit] !== undefined);
    const unknown = spec.models.filter((m) => m !== '*' && !models.has(m));
    if (unknown.length) {
      verdicts.set(key, {
        ready: false,
        reason: 'UnknownModel',
        message: `model${unknown.length > 1 ? 's' : ''} ${unknown.map((m) => `"${m}"`).join(', ')} not configured in the ConfigMap`,
        conflicts: [],
      });
      continue;
    }
    let applied = 0;
    let lost = 0;
    for (const [kind, subjects] of [['user', spec.subjects.users ?? []], ['group', spec.subjects.groups ?? []]] as const) {
      for (const subject of subjects) {
        for (const model of spec.models) {
          const pair = `${kind} "${subject}" on ${model === '*' ? 'all models' : `model "${model}"`}`;
          const claim = JSON.stringify([kind, subject, model]);
          const owner = owners.get(claim);
          if (owner !== undefined) {
            lost++;
            note(key, `${pair}: overridden by ${owner} (older)`);
            note(owner, `${pair}: also claimed by ${key}, which yields`);
            continue;
          }
          owners.set(claim, key);
          applied++;
          const table = kind === 'user' ? file.users : file.groups;
          const entry = (table[subject] ??= {});
          for (const limit of setNames) fields.set(kind, subject, model === '*' ? null : model, part, limit, source);
          if (model === '*') {
            entry.limits = overlay(entry.limits, spec.limits, spec.shadow === true);
          } else {
            const perModel = (entry.models ??= nameTable<LimitsInput>());
            perModel[model] = overlay(perModel[model], spec.limits, spec.shadow === true);
          }
        }
      }
    }
    verdicts.set(key, {
      ready: applied > 0,
      reason: lost === 0 ? 'Applied' : applied > 0 ? 'PartiallyApplied' : 'Conflict',
      message:
        lost === 0
          ? `enforced for ${applied} subject/model pair${applied === 1 ? '' : 's'}`
          : `enforced for ${applied} pair${applied === 1 ? '' : 's'}; ${lost} overridden by older TokenQuotas`,
      conflicts: [],
    });
  }
  for (const [key, notes] of conflicts) {
    const verdict = verdicts.get(key);
    if (verdict) verdicts.set(key, { ...verdict, conflicts: notes });
  }
}

/**
 * A TokenQuota's limits over the ConfigMap's entry, field by field: an enforcing TokenQuota replaces
 * the entry's enforced values, a shadow one its shadow values — trying a quota never loosens the
 * limit in force.
 */
function overlay(base: LimitsInput | undefined, over: LimitsInput, overInShadow: boolean): LimitsInput {
  const { enforced, shadow } = base === undefined ? { enforced: {}, shadow: {} } : splitShadow(base);
  const values = splitShadow(over).enforced;
  const merged = overInShadow ? { enforced, shadow: { ...shadow, ...values } } : { enforced: { ...enforced, ...values }, shadow };
  return Object.keys(merged.shadow).length === 0 ? merged.enforced : { ...merged.enforced, shadow: merged.shadow };
}

function olderFirst(a: TokenQuotaObject, b: TokenQuotaObject): number {
  const time = (o: TokenQuotaObject) => new Date(o.metadata?.creationTimestamp ?? 0).getTime();
  return time(a) - time(b) || objectKey(a).localeCompare(objectKey(b));
}

/**
 * API keys from Secrets: the user is the Secret's tokenwarden.dev/user annotation; each data value is
 * a key, given as its sha256 hex in entries named *.sha256, or in plain (hashed here; the plain key
 * is not kept). A key already given to another user is refused rather than handed over.
 */
function applySecrets(file: LimitsFile, secrets: readonly ApiKeySecret[]): string[] {
  const rejected: string[] = [];
  const owner = new Map(file.apiKeys.map((k) => [k.sha256, k.user]));
  const ordered = [...secrets].sort(
    (a, b) => new Date(a.metadata?.creationTimestamp ?? 0).getTime() - new Date(b.metadata?.creationTimestamp ?? 0).getTime(),
  );
  for (const secret of ordered) {
    const name = `${secret.metadata?.namespace ?? ''}/${secret.metadata?.name ?? ''}`;
    const user = secret.metadata?.annotations?.[SECRET_USER_ANNOTATION];
    if (!user || user.length > 256 || /[\u0000-\u001f\u007f]/.test(user)) {
      rejected.push(`${name}: no valid ${SECRET_USER_ANNOTATION} annotation`);
      continue;
    }
    for (const [entry, encoded] of Object.entries(secret.data ?? {})) {
      const value = Buffer.from(encoded, 'base64').toString('utf8').trim();
      const sha256 = entry.endsWith('.sha256') ? value.toLowerCase() : createHash('sha256').update(value, 'utf8').digest('hex');
      if (!/^[0-9a-f]{64}$/.test(sha256) || value.length === 0) {
        rejected.push(`${name}: entry ${entry} is not ${entry.endsWith('.sha256') ? 'a sha256 hex digest' : 'a key'}`);
        continue;
      }
      const existing = owner.get(sha256);
      if (existing !== undefined && existing !== user) {
        rejected.push(`${name}: entry ${entry} is a key already given to another user`);
        continue;
      }
      owner.set(sha256, user);
      if (existing === undefined) file.apiKeys.push({ sha256, user });
    }
  }
  return rejected;
}
