import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { ChatTemplate, ChatTemplateError } from '../src/tokens/chat-template.js';
import { templateSourceOf } from '../src/tokens/model-tokenizer.js';
import { llamaTokenizerConfig } from './helpers/llama.js';

// Renders the same templates with the same variables in Python's Jinja2 (configured as transformers'
// apply_chat_template configures it, which is what vLLM runs) and in tokenwarden, and requires
// byte-identical output. Python runs once for the whole file (test/python/render_chat_templates.py).

const PYTHON = '/usr/bin/python3';
const RENDERER = fileURLToPath(new URL('./python/render_chat_templates.py', import.meta.url));
const NOV_23_2026 = Date.UTC(2026, 10, 23, 9, 30);
const LLAMA_3_2 = templateSourceOf(llamaTokenizerConfig)!;

interface Case {
  readonly template: string;
  readonly variables: Record<string, unknown>;
}
type Rendering = { output: string } | { error: string };

/** Python's str.isspace() and JavaScript's trim() disagree on these. */
const DISAGREEING = ['\u001c', '\u001d', '\u001e', '\u001f', '\u0085', '\ufeff'];
/** Both call these whitespace, or both do not (U+180E, U+200B), but they are easy to get wrong. */
const AGREEING = ['\u180e', '\u200b', '\u2028', '\u2029', '\u00a0', '\u3000', '\u1680', '\u202f', '\u205f', '\u2000', '\u200a', '\u000b', '\u000c', '\r', '\t'];
const EDGE_CHARACTERS = [...DISAGREEING, ...AGREEING];

/** Texts with `c` at their edges: alone, in runs, mixed with spaces and newlines, around Korean and emoji. */
const withEdges = (c: string) => [
  c,
  c.repeat(3),
  `${c}text${c}`,
  `${c}${c}${c}text${c}${c}`,
  ` \n${c} text ${c}\n `,
  `${c} ${c}안녕하세요 ${c}\n`,
  `${c}😀 emoji 👩‍👩‍👧${c}`,
  `a${c}b ${c} c`,
];

const GENERAL_TEXTS = [
  '',
  'plain ASCII',
  '  leading and trailing  ',
  '안녕하세요, 잘 지내세요? 오늘 날씨가 좋네요.',
  '😀🎉 👩‍👩‍👧‍👦 🇰🇷 x😀y',
  'ΟΔΟΣ ΣΑΣ. Σ ΑΣ\'Α ὈΔΥΣΣΕΎΣ',
  'straße ǆungla ǉ ǌ ﬁne ﬀ ﬃ ᾳ ᾲ ᾷ ῳ ŉ ǰ',
  'ნინო თბილისი',
  'İstanbul ıi',
  "they're bill's friends from the UK",
  'hello-world (foo) [bar] <baz> {qux} x_y 3rd',
  'hELLO wORLD, mIxEd CaSe',
  'tabs\tand\nnew\r\nlines',
  'quote " backslash \\ control \u0001 del \u007f',
];

const TEXTS = [...EDGE_CHARACTERS.flatMap(withEdges), ...GENERAL_TEXTS];

/** One template per filter or method, each rendered over every text. */
const STRING_TEMPLATES = [
  '{{ s | trim }}',
  '{{ s | trim(chars) }}',
  '{{ s.strip() }}',
  '{{ s.lstrip() }}',
  '{{ s.rstrip() }}',
  '{{ s.strip(chars) }}|{{ s.lstrip(chars) }}|{{ s.rstrip(chars) }}|{{ s.strip(none) }}',
  '{% for p in s.split() %}<{{ p }}>{% endfor %}',
  '{% for p in s.split(none, 1) %}<{{ p }}>{% endfor %}|{% for p in s.split(maxsplit=0) %}<{{ p }}>{% endfor %}',
  '{% for p in s.split(" ") %}<{{ p }}>{% endfor %}|{% for p in s.split(" ", 2) %}<{{ p }}>{% endfor %}',
  '{% for p in s.split(sep) %}<{{ p }}>{% endfor %}',
  '{{ s | upper }}|{{ s.upper() }}',
  '{{ s | lower }}|{{ s.lower() }}',
  '{{ s | title }}',
  '{{ s.title() }}',
  '{{ s | capitalize }}|{{ s.capitalize() }}',
  "{% for p in ['', ' ', 'te', s[:1], s[:2], s[-1:], s[1:3]] %}" +
    "{{ 'T' if s.startswith(p) else 'F' }}{{ 'T' if s.endswith(p) else 'F' }}" +
    "{{ 'T' if s.startswith(p, 1) else 'F' }}{{ 'T' if s.endswith(p, 0, -1) else 'F' }}{{ 'T' if s.startswith(p, -2, 9) else 'F' }}" +
    "{% endfor %}{{ 'T' if s.startswith(('zz', s[:1])) else 'F' }}{{ 'T' if s.endswith(('zz', 'yy')) else 'F' }}",
  "{{ s.replace(' ', '_') }}|{{ s.replace(' ', '', 1) }}|{{ s.replace(sep, '<sep>') }}",
  "{{ s.replace('', '|') }}|{{ s.replace('', '|', 2) }}",
  "{{ s | replace(' ', '+') }}|{{ s | replace(sep, '<sep>', 1) }}",
  '{{ s | length }}|{{ s.split() | length }}',
  '{{ s[1:3] }}|{{ s[-2:] }}|{{ s[::-1] }}|{{ s[::2] }}|{{ s[1:-1] }}',
  '{{ s[0] }}|{{ s[1] }}|{{ s[-1] }}|{{ s[-2] }}',
  '{{ s | tojson }}|{{ s | tojson(ensure_ascii=true) }}',
  '{% filter trim %}{{ s }}{% endfilter %}|{% filter title %}{{ s }}{% endfilter %}',
];

const stringCases = STRING_TEMPLATES.flatMap((template) =>
  TEXTS.map((s) => ({ template, variables: { s, chars: ' x😀\u001c\u0085', sep: Array.from(s)[1] ?? '\u0085' } })),
);

const NESTED = {
  name: 'search_places',
  description: '장소를 검색합니다 😀 — "quoted" \\ back\nslash\t\u0001\u007f\u2028\ufeff',
  parameters: {
    type: 'object',
    properties: {
      query: { type: 'string', description: '검색어', minLength: 1 },
      near: { type: 'array', items: { type: 'number' }, minItems: 2, maxItems: 2, default: [37.5665, 126.978] },
      filters: {
        type: 'object',
        properties: { open_now: { type: 'boolean', default: true }, tags: { type: 'array', items: { type: 'string' }, default: [] } },
        additionalProperties: {},
      },
      radius: { type: 'number', minimum: 0.5, maximum: 123.456, multipleOf: 0.25, exclusiveMinimum: 1e-7 },
      limit: { type: 'integer', default: 10, enum: [1, 10, 100, -3, 9007199254740991] },
      units: { enum: ['km', 'mi', null] },
    },
    required: ['query'],
    'zeta ü': { 'é': 1, 'a😀': 2, 'a\uffff': 3, Z: [[], [{}], [[]]] },
  },
};

const TOJSON_TEMPLATES = [
  '{{ x | tojson }}',
  '{{ x | tojson(indent=2) }}',
  '{{ x | tojson(indent=0) }}',
  '{{ x | tojson(indent=tab) }}',
  "{{ x | tojson(separators=(',', ':')) }}",
  "{{ x | tojson(indent=2, separators=(', ', ': ')) }}",
  '{{ x | tojson(sort_keys=true) }}',
  '{{ x | tojson(ensure_ascii=true) }}',
  '{{ x | tojson(true, 4) }}',
  '{{ x | tojson(indent=4, sort_keys=true, ensure_ascii=true) }}',
];
const TOJSON_VALUES: unknown[] = [NESTED, [], {}, [[]], [{}, []], 'text', '', 0, -3, 0.5, true, null, ['안녕', '😀', 1.25, false, null]];
const FLOATS = [0, 1, -1, 0.5, -0.25, 1e-7, 123.456, 1e15, 1e16, 2 ** 60, 1e-4, 1e-5, 0.1 + 0.2, 1 / 3, 5e-324, 1.7976931348623157e308, 12345678.9];

const tojsonCases: Case[] = [
  ...TOJSON_TEMPLATES.flatMap((template) => TOJSON_VALUES.map((x) => ({ template, variables: { x, tab: '\t' } }))),
  // Floats made by the template: Python prints repr(float) (1e-05, 1e+16, 1.0).
  { template: '{% for v in numbers %}{{ (v * 1.0) | tojson }} {% endfor %}', variables: { numbers: FLOATS } },
  { template: '{{ numbers | map(attribute="x") | list | tojson }}', variables: { numbers: [{ x: 0.5 }, { x: 1e-7 }] } },
];

const header = (role: string) => `<|start_header_id|>${role}<|end_header_id|>\n\n`;
const llama = (variables: Record<string, unknown>): Case => ({
  template: LLAMA_3_2,
  variables: { bos_token: '<|begin_of_text|>', add_generation_prompt: true, ...variables },
});

const llamaCases: Case[] = [
  ...EDGE_CHARACTERS.flatMap((c) => [
    llama({
      messages: [
        { role: 'system', content: `${c} You are a helpful assistant.${c}\n` },
        { role: 'user', content: `${c}${c}안녕하세요 😀${c}` },
        { role: 'assistant', content: ` ${c}Hi there!${c} ` },
        { role: 'user', content: `\n${c}\n` },
      ],
    }),
    llama({ messages: withEdges(c).map((content, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content })) }),
    llama({
      messages: [{ role: 'user', content: `${c}Weather in Seoul?${c}` }],
      tools: [{ type: 'function', function: NESTED }],
    }),
  ]),
  llama({
    messages: [
      { role: 'system', content: '\ufeff\u0085 시스템 메시지 \u001f\u0085' },
      { role: 'user', content: '\u001cFind cafés near me ☕\ufeff' },
      { role: 'assistant', content: '', tool_calls: [{ type: 'function', function: { name: 'search_places', arguments: { query: '카페 ☕', near: [37.5665, 126.978], filters: { tags: [], open_now: true } } } }] },
      { role: 'tool', content: '{"results": ["스타벅스 😀"]}' },
    ],
    tools: [{ type: 'function', function: NESTED }, { type: 'function', function: { name: 'noop', description: null, parameters: null } }],
    tools_in_user_message: false,
  }),
  llama({
    messages: [{ role: 'user', content: '  질문\u2028 ' }, { role: 'assistant', content: '\u00a0답변\u3000' }],
    date_string: '26 Jul 2024',
    add_generation_prompt: false,
  }),
  llama({ messages: [{ role: 'assistant', content: null, tool_calls: [{ function: { name: 'a', arguments: {} } }, { function: { name: 'b', arguments: {} } }] }] }),
];

// The Llama 3.1 template's builtin-tool constructs: reject/join, items(), tojson(indent=4), trim.
const LLAMA_3_1_STYLE = `{{- bos_token }}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\\n\\n" }}
    {{- "Selected: " + builtin_tools | select('equalto', 'brave_search') | join(", ") + "\\n" }}
{%- endif %}
{%- for t in tools %}
    {{- t | tojson(indent=4) }}
    {{- "\\n\\n" }}
{%- endfor %}
{%- for message in messages %}
    {%- if message.tool_calls %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
            {%- endfor %}
            {{- ")" }}
        {%- else %}
            {{- '{"name": "' + tool_call.name + '", "parameters": ' + tool_call.arguments | tojson + '}' }}
        {%- endif %}
    {%- else %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}
    {%- endif %}
{%- endfor %}
{%- for key, value in extra.items() %}
    {{- key + '=' + value | trim + ';' }}
{%- endfor %}
`;

const llama31Cases: Case[] = [
  {
    template: LLAMA_3_1_STYLE,
    variables: {
      bos_token: '<|begin_of_text|>',
      builtin_tools: ['brave_search', 'code_interpreter', 'wolfram_alpha'],
      tools: [{ type: 'function', function: NESTED }],
      extra: { first: '\u0085one\u001c', second: '\ufefftwo ' },
      messages: [
        { role: 'user', content: '\u001eSearch for 서울 날씨\ufeff' },
        { role: 'assistant', content: '', tool_calls: [{ function: { name: 'brave_search', arguments: { query: '서울 날씨 😀', lang: 'ko' } } }] },
        { role: 'assistant', content: '', tool_calls: [{ function: { name: 'search_places', arguments: { query: 'x', near: [1.5, 2] } } }] },
      ],
    },
  },
];

const GROUPS: ReadonlyArray<readonly [string, readonly Case[]]> = [
  ['the Llama 3.2 template with Python-only and JavaScript-only whitespace at message edges, Korean, emoji, tools', llamaCases],
  ['a Llama 3.1-style template (builtin_tools | reject | join, | items, tojson(indent=4), trim)', llama31Cases],
  ['string filters and methods (trim, strip, split, case, startswith/endswith, replace, length, indexing, slicing)', stringCases],
  ['tojson as transformers defines it (json.dumps: separators, indent, sort_keys, ensure_ascii, floats)', tojsonCases],
];

let python: Map<Case, Rendering>;

beforeAll(() => {
  const cases = GROUPS.flatMap(([, group]) => group);
  const run = spawnSync(PYTHON, [RENDERER], {
    input: JSON.stringify({ now_ms: NOV_23_2026, cases }),
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    timeout: 60_000,
  });
  if (run.status !== 0) {
    throw new Error(`${PYTHON} ${RENDERER} failed (Jinja2 comes from Debian's python3-jinja2: run \`make system-deps\`): ${run.error?.message ?? run.stderr}`);
  }
  const results = JSON.parse(run.stdout) as Rendering[];
  python = new Map(cases.map((c, i) => [c, results[i]!]));
});

const templates = new Map<string, ChatTemplate>();
function renderInTokenwarden({ template, variables }: Case): Rendering {
  try {
    if (!templates.has(template)) templates.set(template, new ChatTemplate(template, 'UTC', () => NOV_23_2026));
    return { output: templates.get(template)!.render(variables) };
  } catch (err) {
    if (err instanceof ChatTemplateError) return { error: err.message };
    throw err;
  }
}

describe('chat templates render byte-identically to Python Jinja2 (transformers configuration)', () => {
  for (const [name, cases] of GROUPS) {
    it(name, () => {
      const differences = cases.flatMap((c) => {
        const expected = python.get(c)!;
        const actual = renderInTokenwarden(c);
        const agree = 'output' in expected ? 'output' in actual && actual.output === expected.output : 'error' in actual;
        if (agree) return [];
        // JSON shows invisible characters as escapes in the failure report.
        return [{ template: c.template.slice(0, 200), variables: JSON.stringify(c.variables).slice(0, 300), python: JSON.stringify(expected), tokenwarden: JSON.stringify(actual) }];
      });
      expect(differences.slice(0, 10)).toEqual([]);
    });
  }

  it('renders Python errors as errors: raise_exception keeps its message', () => {
    const raised = llamaCases.at(-1)!;
    expect(python.get(raised)).toEqual({ error: 'TemplateError: This model only supports single tool-calls at once!' });
    expect(renderInTokenwarden(raised)).toEqual({ error: 'This model only supports single tool-calls at once!' });
  });

  it('covers real message edges: the Llama 3.2 rendering keeps U+FEFF and drops U+001C..U+001F and U+0085', () => {
    const rendered = renderInTokenwarden(llamaCases.at(-3)!);
    expect(rendered).toHaveProperty('output');
    const output = (rendered as { output: string }).output;
    expect(output).toContain(`${header('system')}Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 23 Nov 2026\n\n`);
    expect(output).toContain('\ufeff\u0085 시스템 메시지<|eot_id|>');
    expect(output).toContain(`${header('user')}Find cafés near me ☕\ufeff<|eot_id|>`);
  });
});
