import type { Prompt } from '../openai/prompt.js';
import { ChatTemplate, ChatTemplateError, type ClockReads } from './chat-template.js';
import { GenerationalCache } from './generational-cache.js';
import { pythonStrip } from './python-strings.js';
import type { TextTokenizer } from './text-tokenizer.js';

/** What a prompt is tokenized as: one entry per sequence vLLM will complete, a text or a count of ids given. */
export interface PromptText {
  readonly sequences: ReadonlyArray<string | number>;
  readonly addSpecialTokens: boolean;
}

/** How many whole-prompt counts each cache generation holds. */
const PROMPT_CACHE_GENERATION_SIZE = 20_000;

/** One model's tokenizer and chat template: a prompt in, the exact prompt token count out. */
export class ModelTokenizer {
  private readonly specialTokens: Record<string, string>;
  /** Counts of whole prompts seen before, by SHA-1 of the prompt, with the clock readings their rendering made. */
  private readonly promptCounts = new GenerationalCache<{ readonly tokens: readonly number[]; readonly clockReads: ClockReads }>(PROMPT_CACHE_GENERATION_SIZE);

  constructor(
    readonly text: TextTokenizer,
    private readonly template: ChatTemplate | undefined,
    tokenizerConfig: Readonly<Record<string, unknown>>,
  ) {
    this.specialTokens = specialTokensOf(tokenizerConfig);
  }

  /**
   * The exact prompt tokens of each sequence of a prompt. With a `cacheKey` (a digest of what the
   * prompt was parsed from: equal keys, equal prompts), a prompt seen before (a client retrying, a
   * shared prompt) is not rendered again as long as every strftime_now its rendering called still
   * prints the same: the rendering is a function of the prompt and those readings alone.
   */
  countPrompt(prompt: Prompt, cacheKey?: string): readonly number[] {
    const known = cacheKey === undefined ? undefined : this.knownCount(cacheKey);
    if (known !== undefined) return known;
    const { text, clockReads } = this.promptText(prompt);
    const tokens = this.count(text);
    if (cacheKey !== undefined) this.promptCounts.set(cacheKey, { tokens, clockReads });
    return tokens;
  }

  /** The count of a prompt seen before under `cacheKey`, if its rendering still holds; no work otherwise. */
  knownCount(cacheKey: string): readonly number[] | undefined {
    const known = this.promptCounts.get(cacheKey);
    if (known === undefined || (known.clockReads.length > 0 && !this.template!.clockReadsHold(known.clockReads))) return undefined;
    return known.tokens;
  }

  promptText(prompt: Prompt): { text: PromptText; clockReads: ClockReads } {
    if (prompt.kind === 'completion') return { text: prompt, clockReads: [] };
    if (this.template === undefined) {
      throw new ChatTemplateError('this model has no chat template; use /v1/completions or configure chatTemplate');
    }
    const rendering = this.template.renderReadingClock({ ...this.specialTokens, ...prompt.templateVariables });
    let rendered = rendering.text;
    if (prompt.continueFinalMessage) rendered = cutAfterFinalMessage(rendered, prompt.templateVariables['messages']);
    return { text: { sequences: [rendered], addSpecialTokens: prompt.addSpecialTokens }, clockReads: rendering.clockReads };
  }

  count(promptText: PromptText): number[] {
    return promptText.sequences.map((s) => (typeof s === 'number' ? s : this.text.count(s, promptText.addSpecialTokens)));
  }
}

/** transformers' continue_final_message: the rendering ends right after the last message's text. */
function cutAfterFinalMessage(rendered: string, messages: unknown): string {
  const last = (messages as Array<{ content?: unknown }>).at(-1)?.content;
  const text = typeof last === 'string' ? pythonStrip(last) : '';
  const at = text ? rendered.lastIndexOf(text) : -1;
  if (at < 0) throw new ChatTemplateError('continue_final_message: the final message does not appear in the rendered prompt');
  return rendered.slice(0, at + text.length);
}

/** bos_token, eos_token, ... as strings, the way transformers passes them to templates. */
function specialTokensOf(config: Readonly<Record<string, unknown>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token']) {
    const value = config[name];
    const content = typeof value === 'string' ? value : (value as { content?: unknown } | null)?.content;
    if (typeof content === 'string') out[name] = content;
  }
  return out;
}

/** The chat template named in tokenizer_config.json (a string, or the "default" of a named list). */
export function templateSourceOf(config: Readonly<Record<string, unknown>>): string | undefined {
  const template = config['chat_template'];
  if (typeof template === 'string') return template;
  if (Array.isArray(template)) {
    const named = template.find((t: { name?: unknown }) => t?.name === 'default') as { template?: unknown } | undefined;
    return typeof named?.template === 'string' ? named.template : undefined;
  }
  return undefined;
}
