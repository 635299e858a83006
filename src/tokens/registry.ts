import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { ConfigSnapshot } from '../config/snapshot.js';
import { BadRequestError, type OpenAIRequest } from '../openai/request.js';
import { promptOf } from '../openai/prompt.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { ChatTemplate, ChatTemplateError } from './chat-template.js';
import type { CountTask } from './count-worker.js';
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
import { readTokenizerFiles, textTokenizerFrom, type TextTokenizer } from './text-tokenizer.js';

type Loaded = { readonly files: TokenizerFiles; readonly text: TextTokenizer; readonly config: Record<string, unknown> };

/** Parsed tokenizers by file, shared by every registry in the process (models often share one). */
const loadedTokenizers = new Map<string, Promise<Loaded>>();

function loadTokenizer(source: TokenizerSource, hub: HubOptions): Promise<Loaded> {
  const key = JSON.stringify(source);
  let loading = loadedTokenizers.get(key);
  if (loading === undefined) {
    loading = (async () => {
      const files = await tokenizerFiles(source, hub);
      const { json, config } = readTokenizerFiles(files);
      return { files, text: textTokenizerFrom(json, config), config };
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
  private models = new Map<string, Promise<{ tokenizer: ModelTokenizer; files: TokenizerFiles }>>();
  private readonly pool: Piscina<CountTask, number> | undefined;
  private threshold = 0;
  private readonly hub: HubOptions;

  /** The worker pool is sized from `config` once; everything else follows `configure`. */
  constructor(
    config: ConfigSnapshot,
    private readonly options: RegistryOptions,
  ) {
    this.hub = options.hub ?? hubOptionsFromEnv();
    const { workers } = config.settings.tokenization;
    this.pool =
      workers > 0
        ? new Piscina<CountTask, number>({
            filename: fileURLToPath(options.workerScript ?? new URL('./count-worker.js', import.meta.url)),
            minThreads: 0,
            maxThreads: workers,
            idleTimeout: 60_000,
          })
        : undefined;
    this.configure(config);
  }

  /** Follows a new configuration: tokenizers already loaded are reused, new ones load in the background. */
  configure(config: ConfigSnapshot): void {
    const { workerThresholdBytes, templateTimeZone } = config.settings.tokenization;
    this.threshold = workerThresholdBytes;
    const models: typeof this.models = new Map();
    for (const model of config.modelNames) {
      const settings = config.settings.models[model]!;
      const source = settings.tokenizer ?? DEFAULT_TOKENIZER_SOURCE;
      const tokenizer = loadTokenizer(source, this.hub).then(
        (loaded) => {
          const templateSource = settings.chatTemplate ?? templateSourceOf(loaded.config);
          const template = templateSource === undefined ? undefined : new ChatTemplate(templateSource, templateTimeZone, this.options.clock);
          return { tokenizer: new ModelTokenizer(loaded.text, template, loaded.config), files: loaded.files };
        },
        (err: Error) => {
          this.options.logger.error({ model, tokenizer: describeSource(source), err: err.message }, 'tokenizer unavailable');
          throw new TokenizerUnavailableError(`The tokenizer for model '${model}' is unavailable: ${err.message}`);
        },
      );
      tokenizer.catch(() => {}); // reported when a request needs it
      models.set(model, tokenizer);
    }
    this.models = models;
  }

  /** Resolves when every model has loaded or failed. */
  async settled(): Promise<void> {
    await Promise.allSettled(this.models.values());
  }

  /** Exactly the prompt_tokens vLLM will report for this request. */
  async count(model: string, request: OpenAIRequest): Promise<number> {
    const loading = this.models.get(model);
    if (loading === undefined) throw new TokenizerUnavailableError(`Model '${model}' is not configured.`);
    const prompt = promptOf(request);
    const { tokenizer, files } = await loading;
    let promptText;
    try {
      promptText = tokenizer.promptText(prompt);
    } catch (err) {
      if (err instanceof ChatTemplateError) throw new BadRequestError(err.message, 'messages');
      throw err;
    }
    const bytes = promptText.texts.reduce((sum, t) => sum + Buffer.byteLength(t, 'utf8'), 0);
    const onWorker = this.pool !== undefined && bytes > this.threshold;
    const stopTimer = this.options.metrics?.tokenizeDuration.startTimer({ thread: onWorker ? 'worker' : 'main' });
    try {
      if (!onWorker) return tokenizer.count(promptText);
      const counted = await this.pool!.run({ files, texts: promptText.texts, addSpecialTokens: promptText.addSpecialTokens });
      return counted + promptText.tokenIds;
    } finally {
      stopTimer?.();
    }
  }

  async close(): Promise<void> {
    await this.pool?.destroy();
  }
}
