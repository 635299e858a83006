import type { Prompt } from '../openai/prompt.js';
import { ChatTemplate, ChatTemplateError } from './chat-template.js';
import { pythonStrip } from './python-strings.js';
import type { TextTokenizer } from './text-tokenizer.js';

/** The texts a prompt is tokenized as, plus token ids the request gave directly. */
export interface PromptText {
  readonly texts: readonly string[];
  readonly addSpecialTokens: boolean;
  readonly tokenIds: number;
}

/** One model's tokenizer and chat template: a prompt in, the exact prompt token count out. */
export class ModelTokenizer {
  private readonly specialTokens: Record<string, string>;

  constructor(
    readonly text: TextTokenizer,
    private readonly template: ChatTemplate | undefined,
    tokenizerConfig: Readonly<Record<string, unknown>>,
  ) {
    this.specialTokens = specialTokensOf(tokenizerConfig);
  }

  promptText(prompt: Prompt): PromptText {
    if (prompt.kind === 'completion') return prompt;
    if (this.template === undefined) {
      throw new ChatTemplateError('this model has no chat template; use /v1/completions or configure chatTemplate');
    }
    let rendered = this.template.render({ ...this.specialTokens, ...prompt.templateVariables });
    if (prompt.continueFinalMessage) rendered = cutAfterFinalMessage(rendered, prompt.templateVariables['messages']);
    return { texts: [rendered], addSpecialTokens: prompt.addSpecialTokens, tokenIds: 0 };
  }

  count(promptText: PromptText): number {
    return promptText.texts.reduce((sum, t) => sum + this.text.count(t, promptText.addSpecialTokens), promptText.tokenIds);
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
