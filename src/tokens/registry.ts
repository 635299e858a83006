import { hash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { ConfigSnapshot } from '../config/snapshot.js';
import { BadRequestError, type OpenAIRequest } from '../openai/request.js';
import { promptOf, type Prompt } from '../openai/prompt.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { ChatTemplate, ChatTemplateError } from './chat-template.js';
import type { CountResult, CountTask } from './count-worker.js';
import type { PromptTokenCounter } from './counter.js';
import { TokenizerUnavailableError } from './errors.js';
import { ModelTokenizer, templateSourceOf } from './model-tokenizer.js';
import {
  DEFAULT_TOKENIZER_SOURCE,
  describeSource,
  hubOptionsFromEnv,
  tokenizerFiles,
  type HubOptions,
  type TokenizerFiles,
  type TokenizerSource,
} from './sources.js';
import { loadTokenizerFiles, type LoadedTokenizer, type TokenizerHandoff } from './text-tokenizer.js';

type Loaded = LoadedTokenizer & { readonly key: string };

let loads = 0;

/** A model's tokenizer: loading, loaded, or failed (and then refused with that error). */
interface ModelSlot {
  /** What the slot was built from: a configuration with the same key keeps the slot (and its caches). */
  readonly key: string;
  readonly loading: Promise<LoadedModel>;
  loaded?: LoadedModel;
  /** The counting workers have loaded it too (or there are none). */
  warm?: boolean;
  error?: TokenizerUnavailableError;
  failedAtMs?: number;
}

/** A failed tokenizer is tried again by a later configuration only after this long (a hub outage is not hammered). */
const RETRY_FAILED_AFTER_MS = 60_000;

interface LoadedModel {
  /** Why chat requests cannot be counted (the chat template does not compile); completions still can. */
  readonly templateError?: string;
  readonly tokenizer: ModelTokenizer;
  /** Names the tokenizer on the workers, which are handed it once (see CountTask). */
  readonly tokenizerKey: string;
  readonly handoff: TokenizerHandoff;
  readonly chatTemplate: string | undefined;
  readonly templateTimeZone: string;
}

/** Parsed tokenizers by file, shared by every registry in the process (models often share one). */
const loadedTokenizers = new Map<string, Promise<Loaded>>();

function loadTokenizer(source: TokenizerSource, hub: HubOptions): Promise<Loaded> {
  const key = JSON.stringify(source);
  let loading = loadedTokenizers.get(key);
  if (loading === undefined) {
    loading = (async () => {
      const files = await tokenizerFiles(source, hub);
      // Workers know a tokenizer by this key: a new load (the file may have changed) is a new key.
      return { key: `${files.tokenizerFile}#${++loads}`, ...loadTokenizerFiles(files) };
    })();
    // A failure is not remembered: the next registry (a config reload) tries again.
    loading.catch(() => loadedTokenizers.delete(key));
    loadedTokenizers.set(key, loading);
  }
  return loading;
}

export interface RegistryOptions {
  readonly logger: Logger;
  readonly metrics?: Metrics;
  readonly hub?: HubOptions;
  /** The compiled worker script; by default count-worker.js beside this module. */
  readonly workerScript?: URL;
  readonly clock?: () => number;
}

/**
 * Every configured model's tokenizer and chat template, loaded in the background: a model whose
 * tokenizer fails to load (say, the hub is unreachable) is refused with a clear error while every
 * other model keeps working. Implements exact prompt counting for the gatekeeper and /v1/tokenize.
 */
export class TokenizerRegistry implements PromptTokenCounter {
  private models = new Map<string, ModelSlot>();
  private readonly pool: Piscina<CountTask, CountResult> | undefined;
  private threshold = 0;
  private readonly hub: HubOptions;
  private firstLoadDone = false;

  /** The worker pool is sized from `config` once; everything else follows `configure`. */
  constructor(
    config: ConfigSnapshot,
    private readonly options: RegistryOptions,
  ) {
    this.hub = options.hub ?? hubOptionsFromEnv();
    const { workers } = config.settings.tokenization;
    this.pool =
      workers > 0
        ? new Piscina<CountTask, CountResult>({
            filename: fileURLToPath(options.workerScript ?? new URL('./count-worker.js', import.meta.url)),
            // Kept alive and warmed per model (see warm): a large prompt never waits for a tokenizer to load.
            minThreads: workers,
            maxThreads: workers,
            idleTimeout: Infinity,
          })
        : undefined;
    this.configure(config);
  }

  /**
   * Follows a new configuration. A model whose tokenizer, chat template and zone are unchanged keeps
   * its slot (loaded tokenizer, caches, or a recent failure); others load in the background.
   */
  configure(config: ConfigSnapshot): void {
    const { workerThresholdBytes, templateTimeZone } = config.settings.tokenization;
    this.threshold = workerThresholdBytes;
    const now = Date.now();
    const models: typeof this.models = new Map();
    for (const model of config.modelNames) {
      const settings = config.settings.models[model]!;
      const source = settings.tokenizer ?? DEFAULT_TOKENIZER_SOURCE;
      const key = JSON.stringify([source, settings.chatTemplate ?? null, templateTimeZone]);
      const previous = this.models.get(model);
      const retry = previous?.failedAtMs !== undefined && now - previous.failedAtMs >= RETRY_FAILED_AFTER_MS;
      models.set(model, previous?.key === key && !retry ? previous : this.load(model, key, source, settings.chatTemplate, templateTimeZone));
    }
    this.models = models;
  }

  private load(model: string, key: string, source: TokenizerSource, configuredTemplate: string | undefined, templateTimeZone: string): ModelSlot {
    const loading = loadTokenizer(source, this.hub).then(
      async (loaded): Promise<LoadedModel> => {
        const chatTemplate = configuredTemplate ?? templateSourceOf(loaded.config);
        let template: ChatTemplate | undefined;
        let templateError: string | undefined;
        try {
          template = chatTemplate === undefined ? undefined : new ChatTemplate(chatTemplate, templateTimeZone, this.options.clock);
        } catch (err) {
          templateError = `The chat template of model '${model}' does not compile: ${(err as Error).message}`;
          this.options.logger.error({ model, err: templateError }, 'chat template unusable');
        }
        const ready: LoadedModel = {
          tokenizer: new ModelTokenizer(loaded.text, template, loaded.config),
          tokenizerKey: loaded.key,
          handoff: loaded.handoff,
          chatTemplate: templateError === undefined ? chatTemplate : undefined,
          templateTimeZone,
          ...(templateError === undefined ? {} : { templateError }),
        };
        return ready;
      },
      (err: Error) => {
        this.options.logger.error({ model, tokenizer: describeSource(source), err: err.message }, 'tokenizer unavailable');
        throw new TokenizerUnavailableError(`The tokenizer for model '${model}' is unavailable: ${err.message}`);
      },
    );
    const slot: ModelSlot = { key, loading };
    loading.then(
      (loaded) => {
        slot.loaded = loaded;
        void this.warm(loaded).then(() => (slot.warm = true));
      },
      (err: TokenizerUnavailableError) => {
        slot.error = err; // reported when a request needs it
        slot.failedAtMs = Date.now();
      },
    );
    return slot;
  }

  /** Loads the model's tokenizer in every worker too, so that the first large prompt is counted in time. */
  private async warm(model: LoadedModel): Promise<void> {
    if (this.pool === undefined) return;
    const prompt: Prompt = { kind: 'completion', sequences: ['warm-up'], addSpecialTokens: true };
    const { tokenizerKey, handoff, chatTemplate, templateTimeZone } = model;
    const task: CountTask = { tokenizerKey, tokenizer: handoff, chatTemplate, templateTimeZone, nowMs: Date.now(), prompt };
    await Promise.all(
      Array.from({ length: this.pool.threads.length || 1 }, () => this.pool!.run(task)),
    ).catch((err: Error) => this.options.logger.warn({ err: err.message }, 'worker warm-up failed; the first large prompt loads the tokenizer'));
  }

  /** Resolves when every model has loaded or failed. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.models.values()].map((slot) => slot.loading));
  }

  /**
   * Whether the first configuration's tokenizers are all loaded (or failed). Readiness waits for
   * this only: a model added later, still loading, answers 503 on its own without taking every other
   * model's traffic away from this replica.
   */
  get initiallyLoaded(): boolean {
    // A configuration with no models (--kube before the first sync) proves nothing yet.
    if (this.models.size === 0) return true;
    this.firstLoadDone ||= [...this.models.values()].every((slot) => slot.warm === true || slot.error !== undefined);
    return this.firstLoadDone;
  }

  /**
   * Exactly the prompt_tokens vLLM will report for this request. A large prompt is rendered (chat)
   * and counted on a worker thread, so it does not hold up other requests' Checks.
   */
  async count(model: string, request: OpenAIRequest): Promise<readonly number[]> {
    const slot = this.models.get(model);
    if (slot === undefined) throw new TokenizerUnavailableError(`Model '${model}' is not configured.`);
    if (slot.error) throw slot.error;
    // Never wait for a download here: Envoy's ext_authz timeout would turn the wait into its own error.
    const loaded = slot.loaded;
    if (loaded === undefined) throw new TokenizerUnavailableError(`The tokenizer for model '${model}' is still loading; retry shortly.`);
    if (request.kind === 'chat' && loaded.templateError !== undefined) throw new TokenizerUnavailableError(loaded.templateError);
    // A body this small holds a small prompt, counted (and cached) here: a request seen before is
    // answered from the cache before its prompt is even built.
    const cacheKey = request.bodyText.length <= this.threshold ? hash('sha256', `${request.kind}\n${request.bodyText}`, 'base64') : undefined;
    const known = cacheKey === undefined ? undefined : loaded.tokenizer.knownCount(cacheKey);
    const prompt = known === undefined ? promptOf(request) : undefined;
    const onWorker = prompt !== undefined && this.pool !== undefined && promptLargerThan(prompt, this.threshold);
    const stopTimer = this.options.metrics?.tokenizeDuration.startTimer({ thread: onWorker ? 'worker' : 'main' });
    try {
      if (known !== undefined) return known;
      if (onWorker) return await this.countOnWorker(this.pool!, loaded, prompt!);
      return countHere(loaded.tokenizer, prompt!, cacheKey);
    } finally {
      stopTimer?.();
    }
  }

  private async countOnWorker(pool: Piscina<CountTask, CountResult>, loaded: LoadedModel, prompt: Prompt): Promise<readonly number[]> {
    const { tokenizerKey, handoff, chatTemplate, templateTimeZone } = loaded;
    const task: CountTask = { tokenizerKey, chatTemplate, templateTimeZone, nowMs: (this.options.clock ?? Date.now)(), prompt };
    let result = await pool.run(task);
    if (result.kind === 'needs-tokenizer') result = await pool.run({ ...task, tokenizer: handoff });
    if (result.kind === 'needs-tokenizer') throw new Error('a counting worker was handed a tokenizer and did not keep it');
    if (result.kind === 'refused') throw new BadRequestError(result.message, 'messages');
    return result.tokens;
  }

  async close(): Promise<void> {
    await this.pool?.destroy();
  }
}

function countHere(tokenizer: ModelTokenizer, prompt: Prompt, cacheKey: string | undefined): readonly number[] {
  try {
    return tokenizer.countPrompt(prompt, cacheKey);
  } catch (err) {
    if (err instanceof ChatTemplateError) throw new BadRequestError(err.message, 'messages');
    throw err;
  }
}

/**
 * Whether the prompt material is larger than `bytes`, measured as the UTF-8 size of its JSON: a chat
 * request's template variables (what rendering walks), a completion's texts. The counter gets the
 * parsed request, not the body, and this is the same order as the body's size, known before rendering.
 * The walk stops once it passes `bytes`, so a small prompt costs microseconds.
 */
function promptLargerThan(prompt: Prompt, bytes: number): boolean {
  const pending: unknown[] = prompt.kind === 'chat' ? [prompt.templateVariables] : [...prompt.sequences];
  let size = 0;
  while (pending.length > 0 && size <= bytes) {
    const value = pending.pop();
    if (typeof value === 'string') {
      size += Buffer.byteLength(value, 'utf8') + 2;
    } else if (Array.isArray(value)) {
      size += 2;
      for (const item of value) pending.push(item);
    } else if (value !== null && typeof value === 'object') {
      size += 2;
      for (const [key, item] of Object.entries(value)) {
        size += Buffer.byteLength(key, 'utf8') + 3;
        pending.push(item);
      }
    } else {
      size += 4; // a number, boolean or null
    }
  }
  return size > bytes;
}
