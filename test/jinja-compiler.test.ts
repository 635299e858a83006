import { Environment, Template } from '@huggingface/jinja';
import { describe, expect, it } from 'vitest';
import { ChatTemplate, ChatTemplateError } from '../src/tokens/chat-template.js';
import { compileTemplate, InterpreterRequired, TemplateNotCompilable } from '../src/tokens/jinja-compiler.js';
import { templateSourceOf } from '../src/tokens/model-tokenizer.js';
import { PythonJinjaInterpreter } from '../src/tokens/python-jinja.js';
import { llamaTokenizerConfig } from './helpers/llama.js';

// Differential tests: every template is rendered with the same variables by the compiled closures
// and by the interpreter ChatTemplate used before (PythonJinjaInterpreter), which must agree byte
// for byte, or throw the same error class with the same message.

const NOV_23_2026 = Date.UTC(2026, 10, 23, 9, 30);
const LLAMA_3_2 = templateSourceOf(llamaTokenizerConfig)!;

/** The globals ChatTemplate gives a template (strftime_now at a fixed time). */
const GLOBALS: Readonly<Record<string, unknown>> = {
  false: false,
  true: true,
  none: null,
  False: false,
  True: true,
  None: null,
  range: (start: number, stop?: number, step = 1) => {
    if (stop === undefined) [start, stop] = [0, start];
    if (step === 0) throw new ChatTemplateError('range() step must not be zero');
    const out: number[] = [];
    for (let i = start; step > 0 ? i < stop : i > stop; i += step) {
      // range('', 'z') counts '', '1', '11', ... forever (in both renderers).
      if (out.push(i) > 1000) throw new ChatTemplateError('range() too long');
    }
    return out;
  },
  raise_exception: (message: unknown) => {
    throw new ChatTemplateError(String(message));
  },
  strftime_now: (format: unknown) => `23 Nov 2026 (${String(format)})`,
};

type Outcome = { output: string } | { error: string };
const INTERPRETER_REQUIRED = 'interpreter required';

const errorOf = (err: unknown): Outcome => ({ error: `${(err as Error).constructor.name}: ${(err as Error).message}` });

function interpreted(parsed: unknown, variables: Record<string, unknown>): Outcome {
  try {
    const env = new Environment();
    for (const [name, value] of Object.entries({ ...GLOBALS, ...variables })) env.set(name, value);
    return { output: new PythonJinjaInterpreter(env).run(parsed).value as string };
  } catch (err) {
    return errorOf(err);
  }
}

function compiledOutcome(render: ReturnType<typeof compileTemplate>, variables: Record<string, unknown>): Outcome | typeof INTERPRETER_REQUIRED {
  try {
    return { output: render(GLOBALS, variables) };
  } catch (err) {
    return err instanceof InterpreterRequired ? INTERPRETER_REQUIRED : errorOf(err);
  }
}

/** Renders every variable set both ways: what differs, and how many renderings needed the interpreter. */
function compare(source: string, variableSets: ReadonlyArray<Record<string, unknown>>) {
  const parsed = new Template(source).parsed;
  const render = compileTemplate(parsed);
  const differences: unknown[] = [];
  let interpreterRequired = 0;
  let errors = 0;
  for (const variables of variableSets) {
    const expected = interpreted(parsed, variables);
    const actual = compiledOutcome(render, variables);
    if (actual === INTERPRETER_REQUIRED) {
      interpreterRequired++;
      continue;
    }
    if ('error' in expected) errors++;
    if (JSON.stringify(actual) !== JSON.stringify(expected)) differences.push({ source: source.slice(0, 120), variables: show(variables), expected, actual });
  }
  return { differences, interpreterRequired, errors };
}

const show = (variables: Record<string, unknown>) =>
  JSON.stringify(variables, (_, value: unknown) => (value === undefined ? '<undefined>' : typeof value === 'function' ? '<function>' : value))?.slice(0, 400);

/** A deterministic pseudo-random generator (mulberry32). */
function generator(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  const chance = (p: number) => next() < p;
  const count = (max: number) => Math.floor(next() * (max + 1));
  return { pick, chance, count };
}
type Random = ReturnType<typeof generator>;

const STRANGE_STRINGS = [
  '', ' ', '   ', '\n', '\n\n', '\t x \t', 'plain text', '  You are a helpful assistant.  ', '안녕하세요, 잘 지내세요?',
  '😀🎉 👩‍👩‍👧‍👦 🇰🇷', 'x😀y', '\u001c', '\u001ctext\u001f', '\u001d\u001e', '\u0085 a \u0085', '\ufeff', '\ufefftext\ufeff',
  '\u2028\u2029', '\u00a0nbsp\u3000', 'ΟΔΟΣ ΣΑΣ', 'straße ǆ ﬁ', 'quote " backslash \\ \u0001 \u007f', '<|eot_id|>',
  '{"city": "Seoul"}', 'tool_calls', 'system', 'İstanbul', 'lone \ud800 surrogate', 'a\r\nb',
  '<think>\nreasoning 😀\n</think>\n\nanswer', '</think>only', '<tool_response>{"temp": 3}</tool_response>',
];

const SCHEMA_VALUES: readonly unknown[] = [0, 1, -3, 0.5, 1e-7, 123.456, 1e16, 2 ** 53 - 1, true, false, null, '', '검색어', [], {}, [1, 'a', null], { '2': 'b', '1': 'a', z: 0 }];

function schema(random: Random, depth = 0): unknown {
  // A copy: JSON never shares an object between two places (the compiled renderer hands sharing to the interpreter).
  if (depth > 2 || random.chance(0.3)) return structuredClone(random.pick(SCHEMA_VALUES));
  if (random.chance(0.3)) return Array.from({ length: random.count(3) }, () => schema(random, depth + 1));
  const out: Record<string, unknown> = {};
  for (let i = random.count(4); i > 0; i--) out[random.pick(['type', 'properties', 'description', 'é', '10', 'items', 'enum', 'default'])] = schema(random, depth + 1);
  return out;
}

const TOOL_NAMES = ['get_weather', 'brave_search', 'code_interpreter', 'wolfram_alpha', '검색', ''];

function tool(random: Random): unknown {
  if (random.chance(0.05)) return random.pick(['a string tool', null, 3]);
  return {
    type: 'function',
    function: { name: random.pick(TOOL_NAMES), description: random.chance(0.5) ? random.pick(STRANGE_STRINGS) : null, parameters: random.chance(0.8) ? schema(random) : null },
  };
}

function toolCall(random: Random): unknown {
  const args = random.pick([() => schema(random), () => '{"city": "Seoul"}', () => ({ query: random.pick(STRANGE_STRINGS), n: 3 }), () => ({})])();
  return { id: 'call_1', type: 'function', function: { name: random.pick(TOOL_NAMES), arguments: args } };
}

function content(random: Random): unknown {
  if (random.chance(0.92)) return random.pick(STRANGE_STRINGS);
  return random.pick([null, undefined, [{ type: 'text', text: 'part' }], { text: 'a dict' }, 42, ['a', 'b']]);
}

function message(random: Random): Record<string, unknown> {
  const role = random.chance(0.01) ? random.pick([null, 42]) : random.pick(['system', 'user', 'user', 'assistant', 'assistant', 'tool', 'ipython', 'developer']);
  const out: Record<string, unknown> = { role, content: content(random) };
  if (random.chance(0.05)) delete out['content'];
  if (role === 'assistant' && random.chance(0.35)) {
    out['tool_calls'] = random.chance(0.1) ? random.pick([null, [], 'calls']) : Array.from({ length: random.pick([1, 1, 1, 2]) }, () => toolCall(random));
  }
  if (role === 'tool' && random.chance(0.5)) out['tool_call_id'] = 'call_1';
  if (role === 'assistant' && random.chance(0.2)) out['reasoning_content'] = random.pick(STRANGE_STRINGS);
  if (random.chance(0.1)) out['name'] = random.pick(STRANGE_STRINGS);
  return out;
}

/** Variables as transformers (and tokenwarden's request layer) hand them to a chat template, and stranger ones. */
function chatVariables(random: Random): Record<string, unknown> {
  const variables: Record<string, unknown> = {
    bos_token: '<|begin_of_text|>',
    messages: Array.from({ length: random.pick([0, 1, 1, 2, 3, 4, 6]) }, () => message(random)),
  };
  if (random.chance(0.9)) variables['add_generation_prompt'] = random.chance(0.95) ? random.chance(0.5) : random.pick(['yes', 0, null]);
  if (random.chance(0.3)) variables['tools'] = random.chance(0.9) ? Array.from({ length: random.count(3) }, () => tool(random)) : null;
  if (random.chance(0.05)) variables['custom_tools'] = [tool(random)];
  if (random.chance(0.2)) variables['tools_in_user_message'] = random.pick([true, false, 'no', undefined]);
  if (random.chance(0.2)) variables['date_string'] = random.pick(['26 Jul 2024', '', '안녕']);
  if (random.chance(0.1)) variables['documents'] = [{ title: 'doc', text: random.pick(STRANGE_STRINGS) }];
  if (random.chance(0.3)) variables['builtin_tools'] = ['brave_search', 'code_interpreter', 'wolfram_alpha'].filter(() => random.chance(0.6));
  if (random.chance(0.8)) variables['eos_token'] = '</s>';
  if (random.chance(0.2)) variables['enable_thinking'] = random.pick([true, false, 0]);
  return variables;
}

const chatVariableSets = (seed: number, count: number) => {
  const random = generator(seed);
  return Array.from({ length: count }, () => chatVariables(random));
};

// Meta's Llama 3.1 Instruct template: builtin tools (reject/join, items, loop.last), <|eom_id|>.
const LLAMA_3_1 = `{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\\n\\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
`;

// Constructs other chat templates use: namespace() flags, macros, loop.index0, negative indexing,
// ternaries, selectattr/map, string methods, `is string`, dict literals, set blocks.
const MACROS_AND_NAMESPACES = `{%- macro render_content(content, prefix='') -%}
    {%- if content is string -%}{{ prefix }}{{ content | trim }}
    {%- elif content is iterable -%}{%- for part in content -%}{{ prefix }}{{ part.text if part is mapping else part }}{{ '\\n' if not loop.last }}{%- endfor -%}
    {%- elif content is none -%}{{ prefix }}<none>
    {%- else -%}{{ prefix }}{{ content | tojson }}{%- endif -%}
{%- endmacro -%}
{%- set ns = namespace(system=none, last_user=-1, tool_rounds=0) -%}
{%- for message in messages -%}
    {%- if message.role == 'system' and loop.first -%}{%- set ns.system = message.content -%}{%- endif -%}
    {%- if message.role == 'user' -%}{%- set ns.last_user = loop.index0 -%}{%- endif -%}
{%- endfor -%}
{%- if ns.system is not none %}<<SYS>>{{ render_content(ns.system) }}<</SYS>>{% endif -%}
{%- set tool_names = tools | map(attribute='function.name') | list if tools else [] -%}
{%- if tool_names %}[TOOLS {{ tool_names | join(', ') }} {{ tools | selectattr('type', 'equalto', 'function') | list | length }}]{% endif -%}
{%- for message in messages[1:] if message.role != 'system' -%}
    {%- set header %}{{ message.role | upper }}#{{ loop.index }}/{{ loop.length }}{% endset -%}
    [{{ header }}{{ ' (last user)' if loop.index0 + 1 == ns.last_user else '' }}]
    {{- render_content(message.content, prefix=message.name ~ ': ' if message.name is defined else '') -}}
    {%- if message.tool_calls is defined and message.tool_calls -%}
        {%- set ns.tool_rounds = ns.tool_rounds + 1 -%}
        {%- for call in message.tool_calls -%}
            {{ '\\n' }}{{ {'name': call.function.name, 'args': call.function.arguments} | tojson(sort_keys=true) }}
        {%- else -%}(no calls)
        {%- endfor -%}
    {%- endif -%}
    {%- if message.content is string and message.content.strip().startswith(('{', '[')) -%}
        (json {{ message.content.split(':')[0][:8] }})
    {%- endif -%}
{%- else -%}(no messages)
{%- endfor -%}
{{ '\\n' }}rounds={{ ns.tool_rounds }} last={{ messages[-1].role if messages else 'none' }}
{%- if add_generation_prompt is defined and add_generation_prompt %}<assistant>{% endif -%}
{%- if documents is defined -%}{%- for doc in documents -%}{{ '\\n' }}[{{ loop.index }}] {{ doc.title | default('untitled') }}: {{ doc['text'] | replace('\\n', ' ') }}{%- endfor -%}{%- endif -%}
`;

// Qwen 2.5's template: tools as JSON lines, <tool_call> blocks, runs of tool responses.
const QWEN_2_5 = `{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
`;

// Qwen 3's reasoning handling: a reversed scan with a namespace, <think> splitting, enable_thinking.
const QWEN_3_STYLE = `{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index and (loop.last or reasoning_content) %}
            {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {{- '<|im_start|>user\\n<tool_response>\\n' + content + '\\n</tool_response><|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}
`;

// Mistral's role alternation check (!= between booleans, %), selectattr, eos_token.
const MISTRAL_STYLE = `{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr('role', 'equalto', 'user') | list %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.last and system_message is defined %}
            {{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}
        {%- else %}
            {{- '[INST] ' + message['content'] + '[/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token }}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
{{- '(' ~ user_messages | length ~ ' user messages)' }}
`;

describe('compiled chat templates render what the interpreter renders', () => {
  // Name, source, and whether the generated variables reach its error paths (raise_exception, bad types).
  const chatTemplates: ReadonlyArray<readonly [string, string, boolean]> = [
    ['the real Llama 3.2 template', LLAMA_3_2, true],
    ['the Llama 3.1 template (builtin tools, items, loop.last, reject/join)', LLAMA_3_1, true],
    ['the Qwen 2.5 template (tools, tool calls, runs of tool responses)', QWEN_2_5, true],
    ['a Qwen 3-style template (reversed scan, namespace, <think> splitting)', QWEN_3_STYLE, false],
    ['a Mistral-style template (role alternation, selectattr)', MISTRAL_STYLE, true],
    ['a template with macros, namespaces, selectattr/map, set blocks and string methods', MACROS_AND_NAMESPACES, true],
  ];
  for (const [name, source, failsSometimes] of chatTemplates) {
    it(name, () => {
      const count = 3000;
      const { differences, interpreterRequired, errors } = compare(source, chatVariableSets(count, count));
      expect(differences.slice(0, 5)).toEqual([]);
      expect(interpreterRequired).toBe(0);
      expect(errors > 0).toBe(failsSometimes);
      expect(errors).toBeLessThan(count);
    });
  }
});

/** Values of every type the templates below combine: the interpreter's rules differ by type. */
const VALUES: readonly unknown[] = [
  undefined, null, true, false, 0, 1, 2, -3, 0.5, -2.5, '', ' ', 'a', 'ab', ' a b ', 'Σ', '😀x', '안녕', '1', 'role', 'odd',
  [], [1, 2, 3], ['a', 'b'], [[1, 2], [3, 4]], [['k', 'v'], ['x', 'y']], [{ role: 'user', a: [1] }, { role: 'assistant', content: 'hi' }], [null, undefined, true],
  {}, { role: 'user', content: 'hi' }, { a: 1, b: [1, 2] }, { '2': 'two', '1': 'one' }, { items: 'own', get: 1 },
  (a: unknown) => `fn(${String(a)})`,
];

/** One small template per construct; x and y take every pair of VALUES. */
const CONSTRUCTS = [
  // Printing, operators, comparisons, membership.
  '{{ x }}', '{{ x ~ y }}', '{{ x + y }}', '{{ x - y }}', '{{ x * y }}', '{{ x / y }}', '{{ x // y }}', '{{ x % y }}', '{{ x ** y }}',
  '{{ x == y }}', '{{ x != y }}', '{{ x < y }}', '{{ x > y }}', '{{ x <= y }}', '{{ x >= y }}', '{{ x in y }}', '{{ x not in y }}',
  '{{ x and y }}', '{{ x or y }}', '{{ not x }}', '{{ -x }}', '{{ +x }}', '{{ x if y else "no" }}', '{{ x if y }}|', '{{ 0.5 + x }}',
  '{{ [x, y] }}', '{{ (x, y) }}', '{{ (x, y) is iterable }}', '{{ {"k": x, "l": y} }}', '{{ {x: y} }}', '{{ [x] + [y] }}', '{{ (x, 1) + (y, 2) }}',
  // Attributes, items, slices.
  '{{ x[y] }}', '{{ x.role }}', '{{ x.length }}', '{{ x[0] }}', '{{ x[-1] }}', '{{ x.0 }}', '{{ x[1:] }}', '{{ x[y:] }}', '{{ x[:y] }}',
  '{{ x[::-1] }}', '{{ x[1:-1:2] }}', '{{ x[-1:0:-1] }}', '{{ x[::y] }}', '{{ x.items }}',
  // Tests.
  ...['defined', 'undefined', 'none', 'string', 'number', 'integer', 'boolean', 'true', 'false', 'iterable', 'mapping', 'sequence', 'callable', 'odd', 'even', 'lower', 'upper', 'nonexistent']
    .map((test) => `{{ x is ${test} }}|{{ x is not ${test} }}`),
  // Filters without arguments.
  ...['tojson', 'safe', 'string', 'length', 'list', 'first', 'last', 'reverse', 'join', 'items', 'keys', 'values', 'get', 'trim', 'title', 'capitalize',
    'upper', 'lower', 'replace', 'indent', 'int', 'abs', 'bool', 'default', 'select', 'reject', 'selectattr', 'rejectattr', 'map'].map((filter) => `{{ x | ${filter} }}`),
  // Filters with arguments.
  '{{ x | join(y) }}', '{{ x | join(", ") }}', '{{ x | join(separator="-") }}', '{{ x | int(y) }}', '{{ x | int(default=7) }}', '{{ x | default(y) }}',
  '{{ x | default(y, true) }}', '{{ x | default(y, boolean=y) }}', '{{ x | indent(2) }}', '{{ x | indent(y, true) }}', '{{ x | indent(width=2, first=y, blank=true) }}',
  '{{ x | replace("a", y) }}', '{{ x | replace(y, "_", 1) }}', '{{ x | trim(y) }}', '{{ x | trim(chars="a ") }}', '{{ x | tojson(indent=y) }}',
  '{{ x | tojson(separators=y) }}', '{{ x | tojson(y) }}', '{{ x | tojson(sort_keys=true, ensure_ascii=y) }}', '{{ x | select("odd") }}', '{{ x | select(y) }}',
  '{{ x | reject("equalto", y) }}', '{{ x | select("string") | list }}', '{{ x | selectattr("role") | list }}', '{{ x | selectattr("role", "equalto", "user") | list }}',
  '{{ x | rejectattr("role", "defined") | list }}', '{{ x | selectattr("a", "equalto") | list }}', '{{ x | selectattr(y) | list }}', '{{ x | map(attribute="role") | list }}',
  '{{ x | map(attribute=y, default="-") | list }}', '{{ x | map(attribute="a.0") | list }}', '{{ x | map("upper") | list }}', '{{ x | items() }}', '{{ x | get("role") }}',
  '{{ x | get(y, "z") }}', '{{ x | keys() }}', '{{ x | title() }}', '{{ x | length() }}', '{{ x | first() }}', '{{ x | upper() }}', '{{ x | safe() }}',
  '{{ x | select }}|{{ x | reject }}', '{{ x | trim | title | length }}',
  // Methods and calls.
  '{{ x.strip() }}|{{ x.lstrip(y) }}|{{ x.rstrip(chars=y) }}', '{{ x.split(y) }}', '{{ x.split(y, 1) }}', '{{ x.split(maxsplit=y) }}', '{{ x.startswith(y) }}',
  '{{ x.endswith(y, 1) }}', '{{ x.startswith((y, "a")) }}', '{{ x.replace(y, "_") }}', '{{ x.upper() }}|{{ x.lower() }}', '{{ x.title() }}|{{ x.capitalize() }}',
  '{{ x.get(y) }}', '{{ x.get(y, "d") }}', '{{ x.items() }}', '{{ x.keys() }}|{{ x.values() }}', '{{ x.foo() }}', '{{ x(y) }}', '{{ x.strip(y, y) }}',
  '{{ x.get(key=y) }}', '{{ x.split(sep=y, sep2=y) }}', '{{ range(x) }}', '{{ range(x, y) | join(",") }}', '{{ raise_exception(x) }}', '{{ strftime_now(x) }}',
  '{{ namespace(x) }}', '{{ namespace(x, y) }}', '{{ namespace(a=x).a }}', '{{ none }}{{ true }}{{ True }}{{ False }}{{ None }}',
  // Statements.
  '{% if x %}A{% elif y %}B{% else %}C{% endif %}', '{% for i in x %}{{ loop.index }}:{{ i }}{{ "," if not loop.last }}{% else %}E{% endfor %}',
  '{% for i in x if i %}{{ i }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.length }}{{ loop.first }}{% endfor %}',
  '{% for i in x %}{{ loop.previtem }}/{{ loop.nextitem }};{% endfor %}', '{% for k, v in x %}{{ k }}={{ v }};{% endfor %}', '{% for k, v in x.items() %}{{ k }}={{ v }};{% endfor %}',
  '{% for i in x %}{% if i == y %}{% break %}{% endif %}{{ i }}{% else %}none{% endfor %}', '{% for i in x %}[{% if i != y %}{% continue %}{% endif %}{{ i }}]{% else %}E{% endfor %}',
  '{% for i in x %}{% for j in y %}{{ loop.index }}{{ j }}{% endfor %}{{ loop.index }}{% endfor %}', '{% for i in x %}{{ loop }}{% endfor %}',
  '{% set z = x %}{{ z }}{% set z = y %}{{ z }}', '{% set a, b = x %}{{ a }}|{{ b }}', '{% set z = 1 %}{% for i in x %}{% set z = i %}{% endfor %}{{ z }}',
  '{% for i in x %}{% set q = i %}{% endfor %}{{ q }}', '{% set ns = namespace(v=x) %}{% for i in y %}{% set ns.v = ns.v ~ i %}{% endfor %}{{ ns.v }}',
  '{% set ns = namespace(x) %}{{ ns }}|{{ ns.a }}|{{ ns | tojson }}', '{% set ns = namespace() %}{% set ns.k = x %}{{ ns.k }}{{ ns }}', '{% set x.a = y %}',
  '{% set t %}{{ x }}-{{ y }}{% endset %}{{ t }}', '{% filter upper %}{{ x }}{% endfilter %}', '{% filter trim %}  {{ x }} {% endfilter %}', '{% filter length %}{{ x }}{% endfilter %}',
  '{% macro m(a, b="d") %}[{{ a }}|{{ b }}|{{ y }}]{% endmacro %}{{ m(x) }}{{ m(x, y) }}{{ m(b=x, a=y) }}', '{% macro m(a) %}{{ a }}{% endmacro %}{{ m(x, y, 3) }}',
  '{% macro m(a) %}{{ a }}{% endmacro %}{{ m(c=x) }}', '{% macro m(a, b=a) %}{{ b }}{% endmacro %}{{ m(x) }}{{ m(x, none) }}', '{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(x) }}',
  '{% macro m() %}{{ i }}{% endmacro %}{% for i in x %}{{ m() }}{% endfor %}', '{% set true = x %}{{ true }}', '{% set none = y %}{{ x is none }}',
  '{% for a, b in [(x, y), [y, x]] %}{{ a }}{{ b }}{% endfor %}', '{% set a, b = (x, y) %}{{ b }}{{ a }}', '{{ {"a": x, "b": 1, "a": y} }}',
  '{% for i in x if loop is defined %}{{ i }}{% endfor %}', '{% for i in x %}{% for j in x if loop.first %}{{ j }}{% endfor %}{% endfor %}',
  '{% for i in x %}{% set loop = y %}{{ loop }}{% endfor %}{{ loop }}', '{{ x.y.z }}|{{ x[0][0] }}|{{ x["a"]["b"] }}',
  '{%- if x -%}  A  {%- endif -%} B {# comment #} C', '{% for i in x %}\n  {{ i }}\n{% endfor %}\n', '  {% if x %}\n  yes\n  {% endif %}\n  end',
];

describe('compiled constructs behave as the interpreter for values of every type', () => {
  const pairs = VALUES.flatMap((x) => VALUES.map((y) => ({ x, y })));
  it.each(CONSTRUCTS.map((source) => [source]))('%s', (source) => {
    const variableSets = /\by\b/.test(source) ? pairs : VALUES.map((x) => ({ x }));
    const { differences, interpreterRequired } = compare(source, variableSets);
    expect(differences.slice(0, 3)).toEqual([]);
    // Most renderings are compared (the rest print functions, compare shared objects, make floats like 2.0, ...).
    expect(interpreterRequired).toBeLessThan(variableSets.length * 0.7);
  });
});

describe('ChatTemplate', () => {
  const wrapped = (outcome: Outcome): Outcome =>
    'output' in outcome || outcome.error.startsWith('ChatTemplateError: ') ? outcome : { error: `ChatTemplateError: chat template failed: ${outcome.error.replace(/^\w+: /, '')}` };

  it('renders the compiled way what the interpreter renders, errors wrapped as before, and reads the clock as before', () => {
    for (const source of [LLAMA_3_2, LLAMA_3_1]) {
      const template = new ChatTemplate(source, 'UTC', () => NOV_23_2026);
      const parsed = new Template(source).parsed;
      for (const variables of chatVariableSets(7, 500)) {
        let actual: Outcome;
        try {
          actual = { output: template.render(variables) };
        } catch (err) {
          actual = errorOf(err);
        }
        expect(actual).toEqual(wrapped(interpreted(parsed, { ...variables, strftime_now: () => '23 Nov 2026' })));
      }
    }
    const template = new ChatTemplate(LLAMA_3_2, 'UTC', () => NOV_23_2026);
    const rendering = template.renderReadingClock({ bos_token: '', messages: [{ role: 'user', content: 'Hi' }] });
    expect(rendering.clockReads).toEqual([['%d %b %Y', '23 Nov 2026']]);
    expect(template.renderReadingClock({ messages: [{ role: 'user', content: 'Hi' }], date_string: 'x' }).clockReads).toEqual([]);
  });

  it('renders with the interpreter a rendering the compiled template cannot do exactly', () => {
    const f = (n: number) => n + 1;
    const shared = { role: 'user' };
    const cases: ReadonlyArray<readonly [string, Record<string, unknown>, string]> = [
      // Floats with integral values.
      ['{{ x * 1.5 }}|{{ x / 2 }}|{{ x * 1.5 + 0.25 }}', { x: 2 }, '3.0|1.0|3.25'],
      ['{{ (x * 1.5) | tojson }}', { x: 2 }, '3.0'],
      // A function printed: the interpreter prints its own wrapper's source.
      ['{{ f }}', { f }, (interpreted(new Template('{{ f }}').parsed, { f }) as { output: string }).output],
      // A dict literal with integer-like keys, which a plain object would reorder.
      ['{{ {"1": x, "0": x} }}', { x: 'a' }, '{"1": "a", "0": "a"}'],
      // An object shared between variables: the interpreter converts it twice (two distinct values).
      ['{{ a == b }}|{{ a in [b] }}', { a: shared, b: shared }, 'false|false'],
    ];
    for (const [source, variables, expected] of cases) {
      expect(() => compileTemplate(new Template(source).parsed)(GLOBALS, variables)).toThrow(InterpreterRequired);
      expect(new ChatTemplate(source).render(variables)).toBe(expected);
    }
    // Variables the interpreter cannot convert fail as they did, before rendering.
    expect(() => new ChatTemplate('{{ x }}').render({ x: 1, big: 10n })).toThrow(new Error('Cannot convert to runtime value: 10'));
    expect(() => new ChatTemplate('{{ x }}').render({ x: 1, namespace: 1 })).toThrow(new SyntaxError('Variable already declared: namespace'));
  });
});

describe('constructs the compiler does not support', () => {
  const UNSUPPORTED: ReadonlyArray<readonly [string, RegExp]> = [
    ['{% macro m() %}[{{ caller() }}]{% endmacro %}{% call m() %}x{{ y }}{% endcall %}', /CallStatement/],
    ['{{ x | dictsort }}', /dictsort/],
    ['{{ x | sort | join }}', /sort/],
    ['{{ x | float }}', /float/],
    ['{{ x | wordcount }}', /wordcount/],
    ['{{ x + 1.0 }}', /float literal 1\.0/],
    ['{% macro m(a) %}{{ a }}{% endmacro %}{{ m(*x) }}', /unpacking/],
    ['{{ namespace(**y) }}', /unpacking/],
    ['{% macro m() %}{{ kwargs }}{% endmacro %}{{ m(a=x) }}', /kwargs or varargs/],
    ['{% macro m() %}{{ varargs }}{% endmacro %}{{ m(x) }}', /kwargs or varargs/],
    ['{% if x %}{% break %}{% endif %}', /outside a for loop/],
    ['{% for i in x %}{% else %}{% continue %}{% endfor %}', /outside a for loop/],
    ['{{ range(x, x=y, x=y) }}', /given twice/],
    ['{% set (a, b.c) = x %}{{ a }}', /set target/],
  ];
  it.each(UNSUPPORTED)('%s is refused, and ChatTemplate renders it with the interpreter', (source, reason) => {
    const parsed = new Template(source).parsed;
    expect(() => compileTemplate(parsed)).toThrow(TemplateNotCompilable);
    expect(() => compileTemplate(parsed)).toThrow(reason);
    const template = new ChatTemplate(source);
    for (const x of [[3, 1, 2], { b: 1, a: 2 }, 'text', 2]) {
      const expected = interpreted(parsed, { x, y: 'y' });
      let actual: Outcome;
      try {
        actual = { output: template.render({ x, y: 'y' }) };
      } catch (err) {
        actual = { error: (err as Error).message };
      }
      expect(actual).toEqual('output' in expected ? expected : { error: `chat template failed: ${expected.error.replace(/^\w+: /, '')}` });
    }
  });
});
