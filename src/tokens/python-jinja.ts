import {
  isInteger, isMapping, isSequence, isString, unlessNone,
  jinjaArray, jinjaBoolean, jinjaFunction, jinjaInteger, jinjaString, jinjaUndefined, JinjaInterpreter,
  type JinjaNode, type JinjaScope, type JinjaValue,
} from './jinja-values.js';
import { bindArguments } from './python-call.js';
import { pythonJsonDumps } from './python-json.js';
import {
  codePointAt, codePointLength, jinjaTitle, pythonAffixMatch, pythonCapitalize, pythonReplace, pythonSplit, pythonStrip, pythonTitle,
  type StripSide,
} from './python-strings.js';

/**
 * An interpreter whose string filters, string methods, string indexing and tojson behave as in the
 * Python Jinja2 that transformers' apply_chat_template runs (inside vLLM). @huggingface/jinja has
 * no filter registry, so this intercepts the filter and attribute nodes it evaluates (its own
 * members are #private, so they cannot replace the package's private methods) and hands
 * everything else back to the package.
 */
export class PythonJinjaInterpreter extends JinjaInterpreter {
  override evaluate(node: JinjaNode | undefined, scope: JinjaScope): JinjaValue {
    switch (node?.type) {
      case EVALUATED:
        return (node as EvaluatedNode).value;
      case 'FilterExpression': {
        const { operand, filter } = node as FilterExpressionNode;
        return this.#applyFilter(this.evaluate(operand, scope), filter, scope);
      }
      case 'FilterStatement': {
        const { body, filter } = node as FilterStatementNode;
        return this.#applyFilter(super.evaluate({ type: 'Program', body } as JinjaNode, scope), filter, scope);
      }
      case 'MemberExpression':
        return this.#evaluateMember(node as MemberExpressionNode, scope);
      default:
        return super.evaluate(node, scope);
    }
  }

  #applyFilter(operand: JinjaValue, filter: FilterNode, scope: JinjaScope): JinjaValue {
    const name = filter.type === 'Identifier' ? filter.value : filter.callee.value;
    const apply = filterFor(name, operand);
    if (apply === undefined) return super.evaluate({ type: 'FilterExpression', operand: evaluated(operand), filter } as JinjaNode, scope);
    const args = filter.type === 'CallExpression' ? this.#evaluateArguments(filter.args, scope) : { positional: [], keyword: new Map() };
    return apply(operand, args, scope);
  }

  #evaluateMember(node: MemberExpressionNode, scope: JinjaScope): JinjaValue {
    const object = this.evaluate(node.object, scope);
    const slicing = node.computed && node.property.type === 'SliceExpression';
    if (!isString(object) || slicing) return super.evaluate({ ...node, object: evaluated(object) } as JinjaNode, scope);
    const key = node.computed
      ? this.evaluate(node.property, scope)
      : node.property.type === 'IntegerLiteral' ? jinjaInteger(node.property.value as number) : jinjaString(node.property.value as string);
    if (isInteger(key)) {
      const char = codePointAt(object.value, key.value);
      return char === undefined ? jinjaUndefined() : jinjaString(char);
    }
    const method = isString(key) ? STRING_METHODS.get(key.value) : undefined;
    if (method !== undefined) return jinjaFunction((args) => method(object.value, argumentsOf(args)));
    return super.evaluate({ ...node, object: evaluated(object), property: node.computed ? evaluated(key) : node.property } as JinjaNode, scope);
  }

  #evaluateArguments(nodes: readonly JinjaNode[], scope: JinjaScope): Arguments {
    const positional: JinjaValue[] = [];
    const keyword = new Map<string, JinjaValue>();
    for (const node of nodes) {
      const { type, key, value, argument } = node as ArgumentNode;
      if (type === 'KeywordArgumentExpression') keyword.set(key.value, this.evaluate(value, scope));
      else if (type === 'SpreadExpression') positional.push(...sequenceOf(this.evaluate(argument, scope)));
      else if (type === 'KeywordSpreadExpression') for (const [k, v] of mappingOf(this.evaluate(argument, scope))) keyword.set(k, v);
      else positional.push(this.evaluate(node, scope));
    }
    return { positional, keyword };
  }
}

interface IdentifierNode { type: 'Identifier'; value: string }
interface CallNode { type: 'CallExpression'; callee: IdentifierNode; args: JinjaNode[] }
type FilterNode = IdentifierNode | CallNode;
interface FilterExpressionNode { type: 'FilterExpression'; operand: JinjaNode; filter: FilterNode }
interface FilterStatementNode { type: 'FilterStatement'; body: JinjaNode[]; filter: FilterNode }
interface MemberExpressionNode { type: 'MemberExpression'; object: JinjaNode; property: JinjaNode & { value?: unknown }; computed: boolean }
interface ArgumentNode { type: string; key: IdentifierNode; value: JinjaNode; argument: JinjaNode }

// A node of this interpreter's own: a value already evaluated, handed back to the package's code
// so that it does not evaluate (and run) an operand twice.
const EVALUATED = 'PythonJinja.Evaluated';
interface EvaluatedNode { type: typeof EVALUATED; value: JinjaValue }
function evaluated(value: JinjaValue): JinjaNode {
  const node: EvaluatedNode = { type: EVALUATED, value };
  return node;
}

interface Arguments {
  readonly positional: readonly JinjaValue[];
  readonly keyword: ReadonlyMap<string, JinjaValue>;
}
type Filter = (operand: JinjaValue, args: Arguments, scope: JinjaScope) => JinjaValue;
type StringMethod = (self: string, args: Arguments) => JinjaValue;

/** Arguments as the package passes them to a function: keyword arguments last, as one value. */
function argumentsOf(args: JinjaValue[]): Arguments {
  const last = args.at(-1);
  if (last?.type !== 'KeywordArgumentsValue') return { positional: args, keyword: new Map() };
  return { positional: args.slice(0, -1), keyword: last.value as Map<string, JinjaValue> };
}

/** Binds arguments to parameter names as Python does; a missing one is undefined. */
function bind(args: Arguments, parameters: readonly string[], callee: string): Array<JinjaValue | undefined> {
  return bindArguments(args.positional, args.keyword, parameters, callee, undefined);
}

function optionalString(argument: JinjaValue | undefined, what: string): string | null {
  const value = unlessNone(argument);
  if (value === undefined) return null;
  if (!isString(value)) throw new TypeError(`${what} must be None or a string, not ${value.type}`);
  return value.value;
}

function optionalInteger(argument: JinjaValue | undefined, what: string): number | null {
  const value = unlessNone(argument);
  if (value === undefined) return null;
  if (!isInteger(value)) throw new TypeError(`${what} must be None or an integer, not ${value.type}`);
  return value.value;
}

function requiredString(value: JinjaValue | undefined, what: string): string {
  const text = optionalString(value, what);
  if (text === null) throw new TypeError(`${what} must be a string`);
  return text;
}

const truthy = (value: JinjaValue | undefined) => value !== undefined && value.__bool__().value;

function sequenceOf(value: JinjaValue): JinjaValue[] {
  if (!isSequence(value)) throw new TypeError(`argument after * must be an iterable, not ${value.type}`);
  return value.value;
}

function mappingOf(value: JinjaValue): Map<string, JinjaValue> {
  if (!isMapping(value)) throw new TypeError(`argument after ** must be a mapping, not ${value.type}`);
  return value.value;
}

const strip = (side: StripSide, callee: string): StringMethod => (self, args) => {
  const [chars] = bind(args, ['chars'], callee);
  return jinjaString(pythonStrip(self, optionalString(chars, `${callee} arg`), side));
};

const replace: StringMethod = (self, args) => {
  const [old, replacement, count] = bind(args, ['old', 'new', 'count'], 'replace');
  return jinjaString(pythonReplace(self, requiredString(old, 'replace() old'), requiredString(replacement, 'replace() new'), optionalInteger(count, 'replace() count') ?? -1));
};

const affixMatch = (atEnd: boolean, callee: string): StringMethod => (self, args) => {
  const [affix, start, end] = bind(args, ['affix', 'start', 'end'], callee);
  const affixes = affix !== undefined && isSequence(affix) ? affix.value : [affix];
  const from = optionalInteger(start, `${callee}() start`);
  const to = optionalInteger(end, `${callee}() end`);
  const what = `${callee} first arg must be str or a tuple of str`;
  return jinjaBoolean(affixes.some((item) => pythonAffixMatch(self, requiredString(item, what), atEnd, from, to)));
};

const STRING_METHODS = new Map<string, StringMethod>([
  ['strip', strip('both', 'strip')],
  ['lstrip', strip('left', 'lstrip')],
  ['rstrip', strip('right', 'rstrip')],
  ['split', (self, args) => {
    const [sep, maxsplit] = bind(args, ['sep', 'maxsplit'], 'split');
    return jinjaArray(pythonSplit(self, optionalString(sep, 'split() sep'), optionalInteger(maxsplit, 'split() maxsplit') ?? -1).map(jinjaString));
  }],
  ['title', (self) => jinjaString(pythonTitle(self))],
  ['capitalize', (self) => jinjaString(pythonCapitalize(self))],
  ['startswith', affixMatch(false, 'startswith')],
  ['endswith', affixMatch(true, 'endswith')],
  ['replace', replace],
]);

/** transformers' tojson: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False). */
const tojson: Filter = (operand, args) => {
  const [ensureAscii, indent, separators, sortKeys] = bind(args, ['ensure_ascii', 'indent', 'separators', 'sort_keys'], 'tojson');
  return jinjaString(pythonJsonDumps(operand, {
    ensureAscii: truthy(ensureAscii),
    indent: indentOf(indent),
    separators: separatorsOf(separators),
    sortKeys: truthy(sortKeys),
  }));
};

function indentOf(argument: JinjaValue | undefined): string | null {
  const indent = unlessNone(argument);
  if (indent === undefined) return null;
  if (isInteger(indent)) return ' '.repeat(Math.max(indent.value, 0));
  return requiredString(indent, 'tojson() indent');
}

function separatorsOf(argument: JinjaValue | undefined): [string, string] | null {
  const separators = unlessNone(argument);
  if (separators === undefined) return null;
  const pair = isSequence(separators) ? separators.value : [];
  if (pair.length !== 2) throw new TypeError('tojson() separators must be a pair of strings');
  return [requiredString(pair[0], 'tojson() item separator'), requiredString(pair[1], 'tojson() key separator')];
}

/** Jinja2's select / reject: keep the items that pass (or fail) a test, or are truthy without one. */
const selectBy = (keep: boolean): Filter => (operand, args, scope) => {
  const [testName, ...testArgs] = args.positional;
  let passes = (item: JinjaValue) => item.__bool__().value;
  if (testName !== undefined) {
    const name = requiredString(testName, 'test name');
    const test = scope.tests.get(name);
    if (test === undefined) throw new Error(`No test named '${name}'.`);
    passes = (item) => test(item, ...testArgs);
  }
  return jinjaArray((operand.value as JinjaValue[]).filter((item) => passes(item) === keep));
};

const onString = (apply: (text: string, args: Arguments) => JinjaValue): Filter => (operand, args) => apply(operand.value as string, args);

const STRING_FILTERS = new Map<string, Filter>([
  ['trim', onString((text, args) => {
    const [chars] = bind(args, ['chars'], 'trim');
    return jinjaString(pythonStrip(text, optionalString(chars, 'trim() chars')));
  })],
  ['title', onString((text) => jinjaString(jinjaTitle(text)))],
  ['capitalize', onString((text) => jinjaString(pythonCapitalize(text)))],
  ['length', onString((text) => jinjaInteger(codePointLength(text)))],
  ['replace', onString(replace)],
]);

const SEQUENCE_FILTERS = new Map<string, Filter>([
  ['select', selectBy(true)],
  ['reject', selectBy(false)],
]);

function filterFor(name: string, operand: JinjaValue): Filter | undefined {
  if (name === 'tojson') return tojson;
  if (isString(operand)) return STRING_FILTERS.get(name);
  if (isSequence(operand)) return SEQUENCE_FILTERS.get(name);
  return undefined;
}
