import { describe, expect, it } from 'vitest';
import { parseOpenAIRequest } from '../src/openai/request.js';
import { promptOf } from '../src/openai/prompt.js';
import { ByteLevelBpe } from '../src/tokens/byte-level-bpe.js';
import { ChatTemplate } from '../src/tokens/chat-template.js';
import { ModelTokenizer, templateSourceOf } from '../src/tokens/model-tokenizer.js';
import { textTokenizerFrom } from '../src/tokens/text-tokenizer.js';
import { manualClock } from './helpers/app.js';
import { llamaTokenizerConfig, llamaTokenizerJson, referenceIds, variedCorpus } from './helpers/llama.js';

/*
 * The counting caches must never change a count. Segments: the text between two added (special)
 * tokens is pre-tokenized and merged on its own — added tokens are split out first, in
 * @huggingface/tokenizers as here — so count(text) is the sum of its segments' counts plus one per
 * added token, and a segment's count can be reused wherever the same segment appears.
 */
describe('segment counts reused across texts', () => {
  it('count equals the reference on texts made of segments seen before, in new combinations', () => {
    const fast = new ByteLevelBpe(llamaTokenizerJson);
    const segments = variedCorpus(7, 60).filter((s) => s.length >= 64 && !s.includes('<|'));
    const specials = ['<|eot_id|>', '<|start_header_id|>', '<|end_header_id|>', '<|begin_of_text|>'];
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i + 2 < segments.length; i++) {
        const text = segments[i]! + specials[i % 4] + segments[(i * 7 + round) % segments.length]! + specials[(i + round) % 4] + segments[i + 2]!;
        expect(fast.count(text, round === 1)).toBe(referenceIds(text, round === 1).length);
      }
    }
  });
});

describe('conversations', () => {
  const template = new ChatTemplate(templateSourceOf(llamaTokenizerConfig)!, 'UTC', () => Date.UTC(2026, 10, 23));
  const counter = () => new ModelTokenizer(textTokenizerFrom(llamaTokenizerJson, llamaTokenizerConfig), template, llamaTokenizerConfig);
  const prompt = (messages: object[]) => promptOf(parseOpenAIRequest(JSON.stringify({ model: 'm', messages }), 'chat'));

  it('counts every turn of a growing conversation exactly as the reference tokenizer does', () => {
    const corpus = variedCorpus(11, 40);
    const warm = counter();
    const messages: object[] = [{ role: 'system', content: 'You answer in Korean and English.' }];
    for (let turn = 0; turn < 20; turn++) {
      messages.push({ role: turn % 2 ? 'assistant' : 'user', content: corpus[turn]! });
      const rendered = warm.promptText(prompt(messages)).text.sequences[0] as string;
      expect(warm.countPrompt(prompt(messages))[0]).toBe(referenceIds(rendered, false).length);
    }
  });
});

describe('whole prompts seen before', () => {
  it('are counted again when what the template printed of the clock changes', () => {
    const clock = manualClock(Date.UTC(2026, 10, 23, 23, 59, 59)); // a Monday
    const weekday = new ChatTemplate("{{ strftime_now('%A') }}: {{ messages[0]['content'] }}", 'UTC', clock);
    const model = new ModelTokenizer(textTokenizerFrom(llamaTokenizerJson, llamaTokenizerConfig), weekday, llamaTokenizerConfig);
    const hello = promptOf(parseOpenAIRequest(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hello there' }] }), 'chat'));
    const monday = model.countPrompt(hello, 'hello')[0];
    expect(monday).toBe(referenceIds('Monday: hello there', false).length);
    expect(model.countPrompt(hello, 'hello')[0]).toBe(monday);
    clock.advance(2 * 24 * 3600 * 1000); // Wednesday: a different count
    expect(model.countPrompt(hello, 'hello')[0]).toBe(referenceIds('Wednesday: hello there', false).length);
  });
});
