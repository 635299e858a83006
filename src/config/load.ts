import { readFile } from 'node:fs/promises';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import type { SnapshotProvenance } from './provenance.js';
import { limitsFileSchema, type LimitsFile } from './schema.js';
import { buildSnapshot, ConfigError, type ConfigSnapshot } from './snapshot.js';

/**
 * Parses and validates the limits YAML (the file, or the same text from a ConfigMap). Its limits'
 * provenance is the file named `source` unless `provenance` says otherwise.
 */
export function parseLimitsYaml(text: string, source: string, provenance?: SnapshotProvenance): ConfigSnapshot {
  return snapshotFrom(parseLimitsFile(text, source), source, provenance);
}

/** The snapshot of validated settings, or a ConfigError naming the source. */
export function snapshotFrom(file: LimitsFile, source: string, provenance: SnapshotProvenance = { base: { kind: 'file', path: source } }): ConfigSnapshot {
  try {
    return buildSnapshot(file, provenance);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`${source}: ${err.message}`);
    throw err;
  }
}

/** The limits YAML as validated settings, before cross-checks (which snapshotFrom makes). */
export function parseLimitsFile(text: string, source: string): LimitsFile {
  let raw: unknown;
  try {
    raw = parseYaml(text) ?? {};
  } catch (err) {
    // Only yaml's first line (what and where): the lines it quotes around the error may hold key hashes.
    const detail = err instanceof YAMLParseError ? (err.message.split('\n')[0] ?? '') : String(err);
    throw new ConfigError(`${source}: not valid YAML: ${detail}`);
  }
  const parsed = limitsFileSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(`${source}: invalid limits configuration:\n${describeIssues(parsed.error)}`);
  }
  return parsed.data;
}

export async function loadLimitsFile(path: string): Promise<ConfigSnapshot> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read limits file ${path}: ${(err as Error).message}`);
  }
  return parseLimitsYaml(text, path);
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => `  - ${issue.path.length ? issue.path.join('.') : '(top level)'}: ${issue.message}`)
    .join('\n');
}
