import type { KubernetesObject, ListWatch } from '@kubernetes/client-node';
import type { Logger } from '../telemetry/logger.js';

export interface SupervisorOptions<T extends KubernetesObject> {
  readonly name: string;
  /** Builds a fresh, not yet started informer (a new one re-lists from scratch). */
  readonly create: () => ListWatch<T>;
  /** Called after any change to the cache, and once the first list has arrived. */
  readonly onChange: () => void;
  readonly logger: Logger;
  readonly onError?: (name: string) => void;
  /** Rebuild (and so re-list) when nothing at all has been heard for this long. */
  readonly silenceMs?: number;
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

/**
 * Keeps a client-node 1.4 informer alive. On its own it stops for good at the first socket error and
 * never resyncs; here an error restarts it (resuming from the last resourceVersion, or re-listing
 * after 410 Gone) with jittered exponential backoff, and a watchdog rebuilds it from a fresh list
 * when it has gone silent (half-open connections stall without any error). While a rebuilt informer
 * lists, the previous cache keeps serving.
 */
export class SupervisedInformer<T extends KubernetesObject> {
  /** The informer whose cache serves, and one that is listing to replace it. */
  private current: ListWatch<T> | undefined;
  private pending: ListWatch<T> | undefined;
  private stopping = false;
  private failures = 0;
  private lastHeardMs = Date.now();
  private restartTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private syncedOnce = false;

  constructor(private readonly options: SupervisorOptions<T>) {}

  /** True once the first full list has arrived. */
  get synced(): boolean {
    return this.syncedOnce;
  }

  list(): readonly T[] {
    return this.current?.list() ?? [];
  }

  start(): void {
    this.stopping = false;
    this.build();
    const silenceMs = this.options.silenceMs ?? 5 * 60_000;
    this.watchdog = setInterval(() => {
      if (Date.now() - this.lastHeardMs > silenceMs) {
        this.options.logger.warn({ informer: this.options.name }, 'watch silent for too long; re-listing');
        this.lastHeardMs = Date.now();
        this.build();
      }
    }, Math.max(50, silenceMs / 5)).unref();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    clearInterval(this.watchdog);
    await this.current?.stop();
  }

  private build(): void {
    const informer = this.options.create();
    const heard = () => {
      this.lastHeardMs = Date.now();
    };
    const changed = () => {
      heard();
      if (informer === this.current) this.options.onChange();
    };
    informer.on('add', changed);
    informer.on('update', changed);
    informer.on('delete', changed);
    informer.on('connect', heard);
    informer.on('error', (err: unknown) => this.restartAfter(informer, err));
    this.pending = informer;
    this.launch(informer);
  }

  /**
   * Starts (or resumes) an informer; once it has listed, it serves the cache. start() reports most
   * failures as 'error' events, but rejects when the watch cannot even be requested (credentials
   * that fail to load, say): that is a failure like any other.
   */
  private launch(informer: ListWatch<T>): void {
    void informer.start().then(
      () => {
        if (this.stopping || informer.latestResourceVersion() === '') return;
        if (informer !== this.pending && informer !== this.current) return;
        this.failures = 0;
        this.lastHeardMs = Date.now();
        if (informer === this.current) return;
        const previous = this.current;
        this.current = informer;
        this.pending = undefined;
        this.syncedOnce = true;
        if (previous) void previous.stop();
        this.options.onChange();
      },
      (err: unknown) => this.restartAfter(informer, err),
    );
  }

  /** Restarts a failed informer with jittered exponential backoff. */
  private restartAfter(informer: ListWatch<T>, err: unknown): void {
    // stop() aborts the request, which reports an error too: only live informers restart.
    if (this.stopping || (informer !== this.current && informer !== this.pending)) return;
    this.failures++;
    this.options.onError?.(this.options.name);
    const delay = Math.min(this.options.maxBackoffMs ?? 30_000, (this.options.initialBackoffMs ?? 500) * 2 ** (this.failures - 1));
    const jittered = delay * (0.5 + Math.random() / 2);
    this.options.logger.warn({ informer: this.options.name, err: (err as Error)?.message, retryInMs: Math.round(jittered) }, 'watch failed; restarting');
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      if (!this.stopping) this.launch(informer);
    }, jittered);
  }
}
