import {
  isDict, isInteger, hasEntry, Namespace, TemplateFunction, InterpreterRequired, typeName, truthy,
  type Arguments,
} from './jinja-plain-values.js';
import type { JinjaValue } from './jinja-values.js';
import { bindArguments } from './python-call.js';
import { pythonJsonDumps } from './python-json.js';
import {
  codePointAt, pythonAffixMatch, pythonCapitalize, pythonReplace, pythonSplit, pythonStrip, pythonTitle,
  type StripSide,
} from './python-strings.js';

// Methods of strings and dicts, tojson and namespace() on plain values, with the argument checks and
// error messages of PythonJinjaInterpreter (Python's str methods) and of the package (the rest).

/** An argument not given (an argument given may be undefined: Jinja's undefined). */
const MISSING = Symbol('missing');
type Bound = unknown;

/** Binds arguments to parameter names as Python does. */
export function bind(args: Arguments, parameters: readonly string[], callee: string): Bound[] {
  return bindArguments(args.positional, args.keyword, parameters, callee, MISSING) as Bound[];
}

const isNone = (argument: Bound) => argument === MISSING || argument === null;

export function optionalString(argument: Bound, what: string): string | null {
  if (isNone(argument)) return null;
  if (typeof argument !== 'string') throw new TypeError(`${what} must be None or a string, not ${typeName(argument)}`);
  return argument;
}

function optionalInteger(argument: Bound, what: string): number | null {
  if (isNone(argument)) return null;
  if (!isInteger(argument)) throw new TypeError(`${what} must be None or an integer, not ${typeName(argument)}`);
  return argument;
}

export function requiredString(argument: Bound, what: string): string {
  const text = optionalString(argument, what);
  if (text === null) throw new TypeError(`${what} must be a string`);
  return text;
}

const isTruthy = (argument: Bound) => argument !== MISSING && truthy(argument);

type StringMethod = (self: string, args: Arguments) => unknown;

const strip = (side: StripSide, callee: string): StringMethod => (self, args) => {
  const [chars] = bind(args, ['chars'], callee);
  return pythonStrip(self, optionalString(chars, `${callee} arg`), side);
};

export const replace: StringMethod = (self, args) => {
  const [old, replacement, count] = bind(args, ['old', 'new', 'count'], 'replace');
  return pythonReplace(self, requiredString(old, 'replace() old'), requiredString(replacement, 'replace() new'), optionalInteger(count, 'replace() count') ?? -1);
};

const affixMatch = (atEnd: boolean, callee: string): StringMethod => (self, args) => {
  const [affix, start, end] = bind(args, ['affix', 'start', 'end'], callee);
  const affixes = Array.isArray(affix) ? affix : [affix];
  const from = optionalInteger(start, `${callee}() start`);
  const to = optionalInteger(end, `${callee}() end`);
  const what = `${callee} first arg must be str or a tuple of str`;
  return affixes.some((item) => pythonAffixMatch(self, requiredString(item, what), atEnd, from, to));
};

/** PythonJinjaInterpreter's str methods, then the package's (upper, lower: JavaScript's case mapping). */
const STRING_METHODS = new Map<string, StringMethod>([
  ['strip', strip('both', 'strip')],
  ['lstrip', strip('left', 'lstrip')],
  ['rstrip', strip('right', 'rstrip')],
  ['split', (self, args) => {
    const [sep, maxsplit] = bind(args, ['sep', 'maxsplit'], 'split');
    return pythonSplit(self, optionalString(sep, 'split() sep'), optionalInteger(maxsplit, 'split() maxsplit') ?? -1);
  }],
  ['title', (self) => pythonTitle(self)],
  ['capitalize', (self) => pythonCapitalize(self)],
  ['startswith', affixMatch(false, 'startswith')],
  ['endswith', affixMatch(true, 'endswith')],
  ['replace', replace],
  ['upper', (self) => self.toUpperCase()],
  ['lower', (self) => self.toLowerCase()],
]);

/** text[key]: a code point, a method, or `length` (UTF-16 units, as the package counts there). */
export function stringMember(text: string, key: unknown): unknown {
  if (isInteger(key)) return codePointAt(text, key);
  if (typeof key !== 'string') throw new Error(`Cannot access property with non-string/non-number: got ${typeName(key)}`);
  const method = STRING_METHODS.get(key);
  if (method !== undefined) return new TemplateFunction((args) => method(text, args));
  return key === 'length' ? text.length : undefined;
}

export const dictItems = (dict: Record<string, unknown>): unknown[][] => Object.entries(dict);

export type Method = (args: Arguments) => unknown;

/** The package's dict methods (ObjectValue builtins), reached when the dict has no such entry. */
export function dictMethod(dict: Record<string, unknown>, name: string): Method | undefined {
  switch (name) {
    case 'get':
      return ({ positional, keyword }) => {
        if (keyword.size > 0 || positional.length === 0) throw new InterpreterRequired('get() without a key or with keyword arguments');
        const [key] = positional;
        if (typeof key !== 'string') throw new Error(`Object key must be a string: got ${typeName(key)}`);
        if (hasEntry(dict, key)) return dict[key];
        return positional.length > 1 ? positional[1] : null;
      };
    case 'items': return () => dictItems(dict);
    case 'keys': return () => Object.keys(dict);
    case 'values': return () => Object.values(dict);
    case 'dictsort': throw new InterpreterRequired('dictsort()');
    default: return undefined;
  }
}

/** transformers' tojson: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False). */
export function tojson(operand: unknown, args: Arguments): string {
  const [ensureAscii, indent, separators, sortKeys] = bind(args, ['ensure_ascii', 'indent', 'separators', 'sort_keys'], 'tojson');
  const options = {
    ensureAscii: isTruthy(ensureAscii),
    indent: indentOf(indent),
    separators: separatorsOf(separators),
    sortKeys: isTruthy(sortKeys),
  };
  return pythonJsonDumps(jsonInputOf(operand), options);
}

function indentOf(argument: Bound): string | null {
  if (isNone(argument)) return null;
  if (isInteger(argument)) return ' '.repeat(Math.max(argument, 0));
  return requiredString(argument, 'tojson() indent');
}

function separatorsOf(argument: Bound): [string, string] | null {
  if (isNone(argument)) return null;
  const pair = Array.isArray(argument) ? argument : [];
  if (pair.length !== 2) throw new TypeError('tojson() separators must be a pair of strings');
  return [requiredString(pair[0], 'tojson() item separator'), requiredString(pair[1], 'tojson() key separator')];
}

/**
 * A value as python-json.ts reads it: its runtime type's name and its underlying value. Made
 * instead of the package's runtime values, whose construction costs several times the encoding.
 */
class JsonInput implements JinjaValue {
  constructor(
    readonly type: string,
    readonly value: unknown,
    private readonly plain: unknown,
  ) {}

  __bool__() {
    return { value: truthy(this.plain) };
  }
}

/** The value python-json.ts encodes (a tuple encodes as a list does). */
function jsonInputOf(value: unknown): JsonInput {
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'undefined':
      return new JsonInput(typeName(value), value, value);
    case 'object':
      if (value === null) return new JsonInput('NullValue', null, value);
      if (Array.isArray(value)) return new JsonInput('ArrayValue', value.map(jsonInputOf), value);
      if (isDict(value)) return new JsonInput('ObjectValue', new Map(Object.entries(value).map(([key, item]) => [key, jsonInputOf(item)])), value);
  }
  throw new InterpreterRequired(`tojson of a ${typeName(value)}`);
}

/** The package's namespace(): from a dict or [key, value] pairs, then keyword arguments. */
export const NAMESPACE = new TemplateFunction(({ positional, keyword }) => {
  if (positional.length > 1) throw new Error(`namespace expected at most 1 argument, got ${positional.length}`);
  const entries = new Map<string, unknown>();
  if (positional.length === 1) {
    const source = positional[0];
    if (isDict(source)) {
      for (const [key, value] of Object.entries(source)) entries.set(key, value);
    } else if (Array.isArray(source)) {
      for (const pair of source) {
        const [key, value] = namespaceEntry(pair);
        entries.set(key, value);
      }
    } else {
      throw new Error(`'${typeName(source)}' object is not iterable`);
    }
  }
  for (const [key, value] of keyword) entries.set(key, value);
  return new Namespace(entries);
});

function namespaceEntry(pair: unknown): [string, unknown] {
  const values = Array.isArray(pair) ? pair : typeof pair === 'string' ? Array.from(pair) : undefined;
  if (values === undefined || values.length !== 2) throw new Error('namespace expected an object or an iterable of [key, value] pairs');
  const [key, value] = values;
  if (typeof key !== 'string') throw new Error('namespace keys must be strings');
  return [key, value];
}
