import type { LimitName } from '../limit-kinds.js';

/**
 * Where a limit value was configured: the level of the precedence order (most specific first:
 * user+model, user, group+model, group, model, defaults) and the subject it names.
 */
export type LimitLevel =
  | { readonly kind: 'user+model'; readonly user: string; readonly model: string }
  | { readonly kind: 'user'; readonly user: string }
  | { readonly kind: 'group+model'; readonly group: string; readonly model: string }
  | { readonly kind: 'group'; readonly group: string }
  | { readonly kind: 'model'; readonly model: string }
  | { readonly kind: 'defaults' };

/** What configured it: the limits file, the ConfigMap, or one TokenQuota. */
export type LimitSource =
  | { readonly kind: 'file'; readonly path: string }
  /**
   * namespace and name when the caller of the merge knows them. `lastGood` when the ConfigMap's
   * current text is refused (or gone) and its last good text is what is enforced: the reason.
   */
  | {
      readonly kind: 'configMap';
      readonly key: string;
      readonly namespace?: string;
      readonly name?: string;
      readonly lastGood?: { readonly reason: string };
    }
  | { readonly kind: 'tokenQuota'; readonly namespace: string; readonly name: string };

/**
 * One side (enforced or shadow) of one effective limit, with where it came from: a number set at a
 * level, `null` (unlimited) set at a level, or set nowhere (unlimited).
 */
export type LimitOrigin =
  | { readonly status: 'limited'; readonly value: number; readonly level: LimitLevel; readonly source: LimitSource }
  | { readonly status: 'unlimited'; readonly value: null; readonly level: LimitLevel; readonly source: LimitSource }
  | { readonly status: 'unset'; readonly value: null };

export interface LimitExplanation {
  /** The value that denies. */
  readonly enforced: LimitOrigin;
  /** The value in shadow mode (counted and reported, never denying); unset when none applies. */
  readonly shadow: LimitOrigin;
}

/** Per limit name (every name of LIMIT_NAMES, in that order), the enforced and shadow values and their origins. */
export type LimitsExplanation = Readonly<Record<LimitName, LimitExplanation>>;

/** The subject of a users/groups entry a TokenQuota can layer over. */
export type SubjectKind = 'user' | 'group';
/**
 * Where in a merged limits entry a value sits: `enforced` is a top-level field of the entry
 * (`tokensPerDay: 5`), `shadow` a field of its `shadow:` object. (A top-level `shadow: true`, of the
 * entry or the whole file, later moves `enforced` fields into shadow mode; their source stays.)
 */
export type EntryPart = 'enforced' | 'shadow';

/**
 * The source of each field that did not come from the base configuration (the file or the
 * ConfigMap), keyed by (subject kind, subject, model or null for the subject-wide `limits`, part,
 * limit name). Built by the Kubernetes merge as it lays TokenQuotas over the ConfigMap; read by the
 * snapshot's explainLimits. A field with no entry here came from the base source.
 */
export class FieldSources {
  private readonly table = new Map<string, LimitSource>();

  set(kind: SubjectKind, subject: string, model: string | null, part: EntryPart, limit: LimitName, source: LimitSource): void {
    this.table.set(key(kind, subject, model, part, limit), source);
  }

  get(kind: SubjectKind, subject: string, model: string | null, part: EntryPart, limit: LimitName): LimitSource | undefined {
    return this.table.get(key(kind, subject, model, part, limit));
  }

  get size(): number {
    return this.table.size;
  }
}

/** A tuple as a Map key: JSON keeps the parts apart whatever characters the names hold; it is never parsed back. */
function key(kind: SubjectKind, subject: string, model: string | null, part: EntryPart, limit: LimitName): string {
  return JSON.stringify([kind, subject, model, part, limit]);
}

/** Where a snapshot's limits came from: the base configuration, and the fields layered over it. */
export interface SnapshotProvenance {
  readonly base: LimitSource;
  readonly fields?: FieldSources;
}

/** "user+model alice / llama-3.2-1b", "group team-a", "defaults" — for people. */
export function describeLevel(level: LimitLevel): string {
  switch (level.kind) {
    case 'user+model':
      return `user+model ${level.user} / ${level.model}`;
    case 'user':
      return `user ${level.user}`;
    case 'group+model':
      return `group+model ${level.group} / ${level.model}`;
    case 'group':
      return `group ${level.group}`;
    case 'model':
      return `model ${level.model}`;
    case 'defaults':
      return 'defaults';
  }
}

/**
 * "file config/limits.yaml", "ConfigMap llm/tokenwarden-limits (limits.yaml)", "ConfigMap
 * llm/tokenwarden-limits (limits.yaml), last good text", "TokenQuota llm/alice" — for people (a last
 * good text's reason is left to the caller: it may run to several lines).
 */
export function describeSource(source: LimitSource): string {
  switch (source.kind) {
    case 'file':
      return `file ${source.path}`;
    case 'configMap': {
      const which = source.name === undefined ? `ConfigMap (${source.key})` : `ConfigMap ${source.namespace ?? ''}/${source.name} (${source.key})`;
      return source.lastGood === undefined ? which : `${which}, last good text`;
    }
    case 'tokenQuota':
      return `TokenQuota ${source.namespace}/${source.name}`;
  }
}
