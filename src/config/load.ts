import { readFile } from 'node:fs/promises';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { limitsFileSchema } from './schema.js';
import { buildSnapshot, ConfigError, type ConfigSnapshot } from './snapshot.js';

/** Parses and validates the limits YAML (the file, or the same text from a ConfigMap). */
export function parseLimitsYaml(text: string, source: string): ConfigSnapshot {
  let raw: unknown;
  try {
    raw = parseYaml(text) ?? {};
  } catch (err) {
    const detail = err instanceof YAMLParseError ? err.message : String(err);
    throw new ConfigError(`${source}: not valid YAML: ${detail}`);
  }
  const parsed = limitsFileSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(`${source}: invalid limits configuration:\n${describeIssues(parsed.error)}`);
  }
  try {
    return buildSnapshot(parsed.data);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`${source}: ${err.message}`);
    throw err;
  }
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
