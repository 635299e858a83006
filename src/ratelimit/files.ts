import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { parseRateLimitFiles, type RateLimitConfig } from './config.js';

/** How often the directory is read again even without a change event (events can be missed on some volumes). */
const POLL_MS = 10_000;
/** Events arrive in bursts (a ConfigMap update swaps a symlink and removes a directory): reload once after them. */
const SETTLE_MS = 200;

/**
 * The rate-limit rules from every `*.yaml` (and `*.yml`) file below a directory, reloaded when the files change, including
 * a Kubernetes ConfigMap volume's symlink swap. An invalid set of files is refused with the file, the
 * path inside it and the reason, and the last good rules keep serving.
 */
export class RateLimitFiles {
  private rules: RateLimitConfig | undefined;
  private digest = '';
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private pending: NodeJS.Timeout | undefined;
  private reloading: Promise<void> = Promise.resolve();

  constructor(
    private readonly dir: string,
    private readonly deps: { readonly logger: Logger; readonly metrics: Metrics },
  ) {}

  get current(): RateLimitConfig | undefined {
    return this.rules;
  }

  /** The first load: invalid rules stop the start (there is nothing good to keep serving). */
  async load(): Promise<void> {
    const files = await this.read();
    this.rules = parseRateLimitFiles(files);
    this.digest = digestOf(files);
    this.deps.metrics.rateLimitConfigInvalid.set(0);
    this.deps.logger.info({ dir: this.dir, files: files.length, domains: this.rules.domains() }, 'rate-limit rules loaded');
  }

  watch(): void {
    const schedule = () => {
      clearTimeout(this.pending);
      this.pending = setTimeout(() => void this.reload(), SETTLE_MS).unref();
    };
    try {
      this.watcher = watch(this.dir, schedule);
      this.watcher.on('error', (err) => this.deps.logger.warn({ dir: this.dir, err: err.message }, 'watching the rate-limit rules failed; polling only'));
    } catch (err) {
      this.deps.logger.warn({ dir: this.dir, err: (err as Error).message }, 'cannot watch the rate-limit rules; polling only');
    }
    this.poll = setInterval(schedule, POLL_MS).unref();
  }

  /** Reads the files again and swaps the rules in if they changed and are valid. */
  reload(): Promise<void> {
    this.reloading = this.reloading.then(() => this.reloadNow());
    return this.reloading;
  }

  close(): void {
    this.watcher?.close();
    clearInterval(this.poll);
    clearTimeout(this.pending);
  }

  private async reloadNow(): Promise<void> {
    let files: Array<{ name: string; text: string }>;
    try {
      files = await this.read();
    } catch (err) {
      this.deps.metrics.rateLimitConfigInvalid.set(1);
      this.digest = '';
      this.deps.logger.error({ dir: this.dir, err: (err as Error).message }, 'cannot read the rate-limit rules; keeping the last good ones');
      return;
    }
    const digest = digestOf(files);
    if (digest === this.digest) return;
    try {
      this.rules = parseRateLimitFiles(files);
    } catch (err) {
      this.digest = digest; // reported once, not at every poll
      this.deps.metrics.rateLimitConfigInvalid.set(1);
      this.deps.logger.error({ dir: this.dir, err: (err as Error).message }, 'rate-limit rules refused; keeping the last good ones');
      return;
    }
    this.digest = digest;
    this.deps.metrics.rateLimitConfigInvalid.set(0);
    this.deps.logger.info({ dir: this.dir, files: files.length, domains: this.rules.domains() }, 'rate-limit rules reloaded');
  }

  /**
   * Every `*.yaml` and `*.yml` file below the directory (subdirectories included, as upstream's
   * loader walks them; symlinks followed; hidden entries such as a ConfigMap volume's ..data skipped).
   */
  private async read(dir = this.dir, prefix = ''): Promise<Array<{ name: string; text: string }>> {
    const files: Array<{ name: string; text: string }> = [];
    for (const name of (await readdir(dir)).filter((n) => !n.startsWith('.')).sort()) {
      const path = join(dir, name);
      const info = await stat(path);
      if (info.isDirectory()) files.push(...(await this.read(path, `${prefix}${name}/`)));
      else if (info.isFile() && /\.ya?ml$/.test(name)) files.push({ name: prefix + name, text: await readFile(path, 'utf8') });
    }
    return files;
  }
}

function digestOf(files: ReadonlyArray<{ name: string; text: string }>): string {
  return createHash('sha256').update(JSON.stringify(files)).digest('hex');
}
