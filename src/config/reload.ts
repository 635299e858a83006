import type { LimitSource } from './provenance.js';
import type { ConfigSnapshot } from './snapshot.js';

/** One difference between two configurations: where, and the values before and after (absent when not set, or not shown). */
export interface ConfigChange {
  /** The path of keys, as data: ["users", "alice", "limits", "tokensPerDay"]. */
  readonly path: readonly string[];
  readonly before?: unknown;
  readonly after?: unknown;
}

/**
 * Settings read once, when the process starts (startApp): a reload takes them into the snapshot but
 * cannot make them act; they take effect at the next restart.
 */
export const START_UP_SETTINGS: ReadonlyArray<readonly string[]> = [
  // The metrics and the reconciler's label sets are built at start-up.
  ['metrics', 'userLabel'],
  // The token-counting worker pool is sized at start-up.
  ['tokenization', 'workers'],
];

/** Paths whose values are credentials or their digests: reported as changed, never with values. */
const UNSHOWN = new Set(['apiKeys', 'admin']);

/**
 * What differs between two configurations, at the deepest key that differs (a user added or removed
 * is one change at ["users", name]). API keys are compared as a set of (digest, user) pairs.
 */
export function diffConfigs(before: ConfigSnapshot, after: ConfigSnapshot): ConfigChange[] {
  const changes: ConfigChange[] = [];
  walk(before.settings, after.settings, [], changes);
  const keys = (c: ConfigSnapshot) => new Set(c.apiKeys.map((k) => JSON.stringify([k.digest.toString('hex'), k.user])));
  const [a, b] = [keys(before), keys(after)];
  if (a.size !== b.size || [...a].some((k) => !b.has(k))) changes.push({ path: ['apiKeys'] });
  return changes;
}

/**
 * A reload from `before` to `after` in a process started with `started`: the changes that act now,
 * and the start-up settings whose value in `after` is not the one the process runs with (still
 * listed after further reloads, until a restart or until the file gives the running value again).
 */
export function reloadOutcome(started: ConfigSnapshot, before: ConfigSnapshot, after: ConfigSnapshot): Omit<ConfigReload, 'source'> {
  const startUpOnly = (path: readonly string[]) => START_UP_SETTINGS.some((setting) => setting.every((key, i) => path[i] === key));
  const changes = diffConfigs(before, after).filter((change) => !startUpOnly(change.path));
  const restartRequired = START_UP_SETTINGS.filter((setting) => JSON.stringify(valueAt(started, setting)) !== JSON.stringify(valueAt(after, setting)));
  return { changed: changes.map((c) => formatPath(c.path)), changes, restartRequired: restartRequired.map(formatPath) };
}

function valueAt(config: ConfigSnapshot, path: readonly string[]): unknown {
  let value: unknown = config.settings;
  for (const key of path) value = isPlainObject(value) && Object.hasOwn(value, key) ? value[key] : undefined;
  return value;
}

function walk(a: unknown, b: unknown, path: string[], out: ConfigChange[]): void {
  if (isPlainObject(a) && isPlainObject(b)) {
    const names = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    for (const name of names) {
      const [x, y] = [Object.hasOwn(a, name) ? a[name] : undefined, Object.hasOwn(b, name) ? b[name] : undefined];
      walk(x, y, [...path, name], out);
    }
    return;
  }
  if (JSON.stringify(a) === JSON.stringify(b)) return;
  if (path.length > 0 && UNSHOWN.has(path[0]!)) return void out.push({ path });
  out.push({ path, ...(a === undefined ? {} : { before: a }), ...(b === undefined ? {} : { after: b }) });
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** A path for people: users.alice.limits.tokensPerDay; a key that is not a plain identifier in JSON quotes: users["a.b"]. */
export function formatPath(path: readonly string[]): string {
  return path.map((key, i) => (/^[A-Za-z_$][\w$-]*$/.test(key) ? (i === 0 ? key : `.${key}`) : `[${JSON.stringify(key)}]`)).join('');
}

/**
 * The answer to a reload: what changed and acts now (formatted paths, and as data with values), the
 * start-up settings (START_UP_SETTINGS) the file sets otherwise than the process runs with, and where
 * the limits now come from.
 */
export interface ConfigReload {
  readonly changed: readonly string[];
  readonly changes: readonly ConfigChange[];
  readonly restartRequired: readonly string[];
  readonly source: LimitSource;
}

/** What asked for a reload: SIGHUP, or POST /v1/admin/reload. */
export type ReloadTrigger = 'signal' | 'http';

/** This instance cannot reload its limits (they come from Kubernetes, or it was started without a file). */
export class ReloadUnavailableError extends Error {
  override name = 'ReloadUnavailableError';
}
