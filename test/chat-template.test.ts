import { describe, expect, it } from 'vitest';
import { promptOf } from '../src/openai/prompt.js';
import { parseOpenAIRequest, BadRequestError } from '../src/openai/request.js';
import { ChatTemplate, ChatTemplateError, strftime } from '../src/tokens/chat-template.js';
import { ModelTokenizer, templateSourceOf } from '../src/tokens/model-tokenizer.js';
import { textTokenizerFrom } from '../src/tokens/text-tokenizer.js';
import { llamaTokenizerConfig, llamaTokenizerJson } from './helpers/llama.js';

const NOV_23_2026 = Date.UTC(2026, 10, 23, 9, 30);
const template = new ChatTemplate(templateSourceOf(llamaTokenizerConfig)!, 'UTC', () => NOV_23_2026);
const model = new ModelTokenizer(textTokenizerFrom(llamaTokenizerJson, llamaTokenizerConfig), template, llamaTokenizerConfig);

const render = (body: object) => {
  const prompt = model.promptText(promptOf(parseOpenAIRequest(JSON.stringify({ model: 'm', ...body }), 'chat')));
  return prompt.text.sequences[0] as string;
};

// The Llama 3.2 Instruct prompt format as Meta documents it: a system header always, with the
// knowledge cut-off and today's date, then one header + text + <|eot_id|> per message.
const header = (role: string) => `<|start_header_id|>${role}<|end_header_id|>\n\n`;
const system = (text: string) => `<|begin_of_text|>${header('system')}Cutting Knowledge Date: December 2023\nToday Date: 23 Nov 2026\n\n${text}<|eot_id|>`;

describe('Llama 3.2 chat template', () => {
  it('renders a multi-turn conversation with a system message', () => {
    expect(
      render({
        messages: [
          { role: 'system', content: '  You are a helpful assistant.  ' },
          { role: 'user', content: 'Hello' },
          { role: 'assistant', content: 'Hi there!' },
          { role: 'user', content: '안녕하세요, 잘 지내세요?' },
        ],
      }),
    ).toBe(
      system('You are a helpful assistant.') +
        `${header('user')}Hello<|eot_id|>${header('assistant')}Hi there!<|eot_id|>${header('user')}안녕하세요, 잘 지내세요?<|eot_id|>${header('assistant')}`,
    );
  });

  it('renders a conversation without a system message (empty system block)', () => {
    expect(render({ messages: [{ role: 'user', content: 'What is 2+2?' }, { role: 'assistant', content: '4' }, { role: 'user', content: 'And 3+3?' }] })).toBe(
      system('') + `${header('user')}What is 2+2?<|eot_id|>${header('assistant')}4<|eot_id|>${header('user')}And 3+3?<|eot_id|>${header('assistant')}`,
    );
  });

  it('joins text parts with newlines and honours add_generation_prompt: false', () => {
    expect(
      render({
        add_generation_prompt: false,
        messages: [{ role: 'user', content: [{ type: 'text', text: 'part one' }, { type: 'text', text: 'part two' }] }],
      }),
    ).toBe(system('') + `${header('user')}part one\npart two<|eot_id|>`);
  });

  it('cuts after the final message for continue_final_message', () => {
    expect(
      render({
        add_generation_prompt: false,
        continue_final_message: true,
        messages: [{ role: 'user', content: 'Write a haiku' }, { role: 'assistant', content: 'Autumn moonlight' }],
      }),
    ).toBe(system('') + `${header('user')}Write a haiku<|eot_id|>${header('assistant')}Autumn moonlight`);
  });

  it('strips the final message as Python does before cutting after it (U+001C stripped, U+FEFF kept)', () => {
    const cut = (content: string) =>
      render({ add_generation_prompt: false, continue_final_message: true, messages: [{ role: 'user', content: 'Go' }, { role: 'assistant', content }] });
    // Llama's template trims the content itself; the cut must find what Python's strip() leaves.
    expect(cut('Autumn\u001c')).toBe(system('') + `${header('user')}Go<|eot_id|>${header('assistant')}Autumn`);
    expect(cut('Autumn\ufeff')).toBe(system('') + `${header('user')}Go<|eot_id|>${header('assistant')}Autumn\ufeff`);
  });

  it('puts tools into the first user message, as the template does by default', () => {
    const text = render({
      messages: [{ role: 'user', content: 'Weather in Seoul?' }],
      tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
    })!;
    expect(text).toContain(`${header('system')}Environment: ipython\nCutting Knowledge Date`);
    expect(text).toContain('"name": "get_weather"');
    expect(text).toContain('"description": null');
    expect(text).toMatch(/Weather in Seoul\?<\|eot_id\|>/);
  });

  it('renders assistant tool calls with their arguments as JSON', () => {
    const text = render({
      messages: [
        { role: 'user', content: 'Weather?' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Seoul"}' } }] },
        { role: 'tool', tool_call_id: 'c1', content: '{"temp": 3}' },
      ],
    })!;
    expect(text).toContain(`${header('assistant')}{"name": "get_weather", "parameters": {"city": "Seoul"}}<|eot_id|>`);
    // In Jinja2 a string `is iterable`, so this template JSON-encodes a tool result given as a string.
    expect(text).toContain(`${header('ipython')}"{\\"temp\\": 3}"<|eot_id|>`);
  });

  it('turns raise_exception into a clear error (a 400 for the client)', () => {
    expect(() =>
      render({
        messages: [
          { role: 'user', content: 'x' },
          { role: 'assistant', content: null, tool_calls: [{ function: { name: 'a', arguments: '{}' } }, { function: { name: 'b', arguments: '{}' } }] },
        ],
      }),
    ).toThrow(new ChatTemplateError('This model only supports single tool-calls at once!'));
  });

  it('refuses image parts and malformed messages', () => {
    expect(() => render({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] })).toThrow(BadRequestError);
    expect(() => render({ messages: [] })).toThrow(/non-empty array/);
    expect(() => render({ messages: [{ content: 'no role' }] })).toThrow(/role/);
  });
});

describe("Python's string semantics (Jinja2 runs in Python inside vLLM)", () => {
  const renderWith = (source: string, variables: Record<string, unknown>) => new ChatTemplate(source, 'UTC', () => NOV_23_2026).render(variables);

  it("trims message edges as Python's str.strip(): U+001C..U+001F and U+0085 go, U+FEFF stays", () => {
    expect(
      render({
        messages: [
          { role: 'system', content: '\u001c\u0085 Be brief. \u001f' },
          { role: 'user', content: '\ufeff안녕하세요\u001d\u001e ' },
        ],
      }),
    ).toBe(system('Be brief.') + `${header('user')}\ufeff안녕하세요<|eot_id|>${header('assistant')}`);
    expect(renderWith('[{{ s | trim }}|{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}]', { s: '\u0085\u2028 x \u180e\u200b' })).toBe(
      '[x \u180e\u200b|x \u180e\u200b|x \u180e\u200b|\u0085\u2028 x \u180e\u200b]',
    );
  });

  it('splits on Python whitespace and counts, indexes and slices code points', () => {
    expect(renderWith('{% for p in s.split() %}<{{ p }}>{% endfor %}', { s: 'a\u001fb\ufeffc\u0085 d' })).toBe('<a><b\ufeffc><d>');
    expect(renderWith('{{ s | length }} {{ s[0] }} {{ s[-1] }} {{ s[1:] }}', { s: '😀a👍' })).toBe('3 😀 👍 a👍');
  });

  it('title-cases and capitalizes as Python does', () => {
    expect(renderWith('{{ s | title }}|{{ s.title() }}|{{ s | capitalize }}', { s: "hELLO they're (ǆ-ﬁ)" })).toBe(
      "Hello They're (Ǆ-FI)|Hello They'Re (ǅ-Fi)|Hello they're (ǆ-ﬁ)",
    );
  });

  it("writes tojson as transformers' json.dumps: Python float repr, indent 0 and string indents, sort_keys by code point", () => {
    expect(renderWith('{{ x | tojson }}', { x: { min: 1e-7, list: [0.5, [], {}] } })).toBe('{"min": 1e-07, "list": [0.5, [], {}]}');
    expect(renderWith('{{ (x * 1.0) | tojson }}', { x: 1e16 })).toBe('1e+16');
    expect(renderWith('{{ x | tojson(indent=0) }}', { x: [1, 2] })).toBe('[\n1,\n2\n]');
    expect(renderWith('{{ x | tojson(indent="\t", sort_keys=true) }}', { x: { b: 1, '😀': 2, '\uffff': 3 } })).toBe('{\n\t"b": 1,\n\t"\uffff": 3,\n\t"😀": 2\n}');
  });

  it("renders Llama 3.1's builtin_tools line (reject and join)", () => {
    expect(renderWith(`{{ builtin_tools | reject('equalto', 'code_interpreter') | join(', ') }}`, { builtin_tools: ['brave_search', 'code_interpreter', 'wolfram_alpha'] })).toBe(
      'brave_search, wolfram_alpha',
    );
  });
});

describe('strftime_now', () => {
  it("formats like Python's strftime in the configured zone, C locale", () => {
    expect(strftime(NOV_23_2026, '%d %b %Y', 'UTC')).toBe('23 Nov 2026');
    expect(strftime(Date.UTC(2026, 10, 23, 20, 5, 9), '%Y-%m-%d %H:%M:%S %A %B %j %I%p', 'Asia/Seoul')).toBe('2026-11-24 05:05:09 Tuesday November 328 05AM');
    expect(strftime(Date.UTC(2026, 0, 5), '%d %b %y %%', 'UTC')).toBe('05 Jan 26 %');
  });
});
