import { bind, dictItems, dictMethod, optionalString, replace, requiredString, tojson } from './jinja-plain-methods.js';
import {
  isCallable, isDict, isInteger, isTuple, hasEntry, numberResult, printed, rawText, strictEquals, typeName, truthy,
  InterpreterRequired, Namespace, NO_ARGUMENTS, TemplateNotCompilable,
  type Arguments,
} from './jinja-plain-values.js';
import { codePointLength, jinjaTitle, pythonCapitalize, pythonStrip } from './python-strings.js';

// Tests (`is defined`, ...) and filters on plain values. A filter does what PythonJinjaInterpreter
// does: its own Python versions for string operands (trim, title, capitalize, length, replace),
// select/reject on sequences and tojson on anything; otherwise the package's filter, which depends
// on whether the filter is called with parentheses and on the operand's type.

type Test = (...values: unknown[]) => boolean;

const equalTo: Test = (...values) => {
  if (values.length < 2) throw new InterpreterRequired('equalto without a value to compare with');
  return strictEquals(values[0], values[1]);
};

const parity = (name: string, odd: boolean): Test => (value) => {
  if (!isInteger(value)) throw new Error(`cannot ${name} on ${typeName(value)}`);
  return (value % 2 !== 0) === odd;
};

/** The package's tests. */
export const TESTS: ReadonlyMap<string, Test> = new Map<string, Test>([
  ['boolean', (value) => typeof value === 'boolean'],
  ['callable', isCallable],
  ['odd', parity('odd', true)],
  ['even', parity('even', false)],
  ['false', (value) => value === false],
  ['true', (value) => value === true],
  ['none', (value) => value === null],
  ['string', (value) => typeof value === 'string'],
  ['number', (value) => typeof value === 'number'],
  ['integer', isInteger],
  // A list or a string, but not a tuple (the package compares the exact type).
  ['iterable', (value) => (Array.isArray(value) && !isTuple(value)) || typeof value === 'string'],
  ['mapping', isDict],
  ['sequence', (value) => Array.isArray(value) || isDict(value) || typeof value === 'string'],
  ['lower', (value) => typeof value === 'string' && value === value.toLowerCase()],
  ['upper', (value) => typeof value === 'string' && value === value.toUpperCase()],
  ['defined', (value) => value !== undefined],
  ['undefined', (value) => value === undefined],
  ['equalto', equalTo],
  ['eq', equalTo],
]);

/** A filter applied to its operand; it evaluates its arguments (if any) when it needs them. */
export type Filter = (operand: unknown, args: () => Arguments) => unknown;

const SUPPORTED = new Set([
  'tojson', 'safe', 'string', 'length', 'list', 'first', 'last', 'reverse', 'join', 'items', 'keys', 'values', 'get',
  'trim', 'title', 'capitalize', 'upper', 'lower', 'replace', 'indent', 'int', 'abs', 'bool', 'default',
  'select', 'reject', 'selectattr', 'rejectattr', 'map',
]);

/**
 * `operand | name` or, when `called`, `operand | name(...)`. `literalArguments` holds the arguments
 * when all are string literals (selectattr and rejectattr accept nothing else).
 */
export function compileFilter(name: string, called: boolean, literalArguments: readonly string[] | undefined): Filter {
  if (!SUPPORTED.has(name)) throw new TemplateNotCompilable(`the filter '${name}' is not supported`);
  const argumentsOf = (args: () => Arguments) => (called ? args() : NO_ARGUMENTS);
  if (name === 'tojson') return (operand, args) => tojson(operand, argumentsOf(args));
  const onString = PYTHON_STRING_FILTERS.get(name);
  const onSequence = PYTHON_SEQUENCE_FILTERS.get(name);
  return (operand, args) => {
    if (onString !== undefined && typeof operand === 'string') return onString(operand, argumentsOf(args));
    if (onSequence !== undefined && Array.isArray(operand)) return onSequence(operand, argumentsOf(args));
    return called ? calledFilter(name, operand, args, literalArguments) : plainFilter(name, operand);
  };
}

const PYTHON_STRING_FILTERS = new Map<string, (text: string, args: Arguments) => unknown>([
  ['trim', (text, args) => {
    const [chars] = bind(args, ['chars'], 'trim');
    return pythonStrip(text, optionalString(chars, 'trim() chars'));
  }],
  ['title', (text) => jinjaTitle(text)],
  ['capitalize', (text) => pythonCapitalize(text)],
  ['length', (text) => codePointLength(text)],
  ['replace', replace],
]);

/** Jinja2's select / reject: keep the items that pass (or fail) a test, or are truthy without one. */
const selectBy = (keep: boolean) => (items: readonly unknown[], args: Arguments): unknown[] => {
  const [testName, ...testArgs] = args.positional;
  let passes = truthy;
  if (args.positional.length > 0) {
    const name = requiredString(testName, 'test name');
    const test = TESTS.get(name);
    if (test === undefined) throw new Error(`No test named '${name}'.`);
    passes = (item) => test(item, ...testArgs);
  }
  return items.filter((item) => passes(item) === keep);
};

const PYTHON_SEQUENCE_FILTERS = new Map([
  ['select', selectBy(true)],
  ['reject', selectBy(false)],
]);

/** The package's filter written without parentheses. */
function plainFilter(name: string, operand: unknown): unknown {
  if (name === 'safe') return operand;
  if (Array.isArray(operand)) {
    switch (name) {
      case 'list': return operand;
      case 'first': return item(operand, 0);
      case 'last': return item(operand, operand.length - 1);
      case 'length': return operand.length;
      case 'reverse': return operand.slice().reverse();
      case 'join': return joined(operand, '');
      case 'string': return printed(operand);
    }
    throw new Error(`Unknown ArrayValue filter: ${name}`);
  }
  if (typeof operand === 'string') {
    switch (name) {
      case 'upper': return operand.toUpperCase();
      case 'lower': return operand.toLowerCase();
      case 'indent': return indented(operand, '    ', false, false);
      case 'join':
      case 'string':
        return operand;
      case 'int': return parsedInteger(operand) ?? 0;
    }
    throw new Error(`Unknown StringValue filter: ${name}`);
  }
  if (typeof operand === 'number') {
    switch (name) {
      case 'abs': return Math.abs(operand);
      case 'int': return numberResult(Math.floor(operand), false);
      case 'string': return String(operand);
    }
    throw new Error(`Unknown NumericValue filter: ${name}`);
  }
  if (isDict(operand)) {
    switch (name) {
      case 'items': return dictItems(operand);
      case 'length': return Object.keys(operand).length;
    }
    const method = dictMethod(operand, name);
    if (method !== undefined) return method(NO_ARGUMENTS);
    throw new Error(`Unknown ObjectValue filter: ${name}`);
  }
  if (typeof operand === 'boolean') {
    switch (name) {
      case 'bool': return operand;
      case 'int': return operand ? 1 : 0;
      case 'string': return String(operand);
    }
    throw new Error(`Unknown BooleanValue filter: ${name}`);
  }
  throw new Error(`Cannot apply filter "${name}" to type: ${typeName(operand)}`);
}

/** The package's filter written with parentheses. */
function calledFilter(name: string, operand: unknown, args: () => Arguments, literalArguments: readonly string[] | undefined): unknown {
  switch (name) {
    case 'join': return joinFilter(operand, args);
    case 'int': return intFilter(operand, args());
    case 'default': return defaultFilter(operand, args());
  }
  if (Array.isArray(operand)) {
    switch (name) {
      case 'selectattr': return selectByAttribute(name, operand, literalArguments, true);
      case 'rejectattr': return selectByAttribute(name, operand, literalArguments, false);
      case 'map': return mapAttribute(operand, args());
    }
    throw new Error(`Unknown ArrayValue filter: ${name}`);
  }
  if (typeof operand === 'string') {
    if (name === 'indent') return indentFilter(operand, args());
    throw new Error(`Unknown StringValue filter: ${name}`);
  }
  if (isDict(operand)) {
    const method = dictMethod(operand, name);
    if (method !== undefined) return method(args());
    throw new Error(`Unknown ObjectValue filter: ${name}`);
  }
  throw new Error(`Cannot apply filter "${name}" to type: ${typeName(operand)}`);
}

/** An argument given by position or by name, else `fallback`. */
function option({ positional, keyword }: Arguments, position: number, name: string, fallback: unknown): unknown {
  if (position < positional.length) return positional[position];
  return keyword.has(name) ? keyword.get(name) : fallback;
}

function item(items: readonly unknown[], index: number): unknown {
  if (!(index in items)) throw new InterpreterRequired('first or last of an empty list');
  return items[index];
}

/** Array.prototype.join of the underlying values: none and undefined join as ''. */
const joined = (items: readonly unknown[], separator: string) =>
  items.map((value) => (value === null || value === undefined ? '' : rawText(value))).join(separator);

function joinFilter(operand: unknown, args: () => Arguments): string {
  let items: readonly unknown[];
  if (typeof operand === 'string') items = Array.from(operand);
  else if (Array.isArray(operand)) items = operand;
  else throw new Error(`Cannot apply filter "join" to type: ${typeName(operand)}`);
  const separator = option(args(), 0, 'separator', '');
  if (typeof separator !== 'string') throw new Error('separator must be a string');
  return joined(items, separator);
}

function parsedInteger(text: string): number | undefined {
  const value = parseInt(text, 10);
  return Number.isNaN(value) ? undefined : numberResult(value, false);
}

function intFilter(operand: unknown, args: Arguments): unknown {
  const fallback = option(args, 0, 'default', 0);
  if (typeof operand === 'string') return parsedInteger(operand) ?? fallback;
  if (typeof operand === 'number') return operand;
  if (typeof operand === 'boolean') return operand ? 1 : 0;
  throw new Error(`Cannot apply filter "int" to type: ${typeName(operand)}`);
}

function defaultFilter(operand: unknown, args: Arguments): unknown {
  const fallback = args.positional.length > 0 ? args.positional[0] : '';
  const ifFalsy = option(args, 1, 'boolean', false);
  if (typeof ifFalsy !== 'boolean') throw new Error('`default` filter flag must be a boolean');
  return operand === undefined || (ifFalsy && !truthy(operand)) ? fallback : operand;
}

const indented = (text: string, indent: string, first: boolean, blank: boolean) =>
  text
    .split('\n')
    .map((line, i) => ((!first && i === 0) || (!blank && line.length === 0) ? line : indent + line))
    .join('\n');

function indentFilter(text: string, args: Arguments): string {
  const width = option(args, 0, 'width', 4);
  if (!isInteger(width)) throw new Error('width must be a number');
  // The package reads these flags with JavaScript's truthiness of the underlying value.
  return indented(text, ' '.repeat(width), !!option(args, 1, 'first', false), !!option(args, 2, 'blank', false));
}

const isAttributeContainer = (value: unknown) => isDict(value) || value instanceof Namespace;

/** A dict's or a namespace's entry, or undefined. */
function entryOf(container: unknown, key: string): { present: boolean; value: unknown } {
  if (container instanceof Namespace) return { present: container.entries.has(key), value: container.entries.get(key) };
  const dict = container as Record<string, unknown>;
  return hasEntry(dict, key) ? { present: true, value: dict[key] } : { present: false, value: undefined };
}

function selectByAttribute(name: string, items: readonly unknown[], literalArguments: readonly string[] | undefined, keep: boolean): unknown[] {
  if (items.some((value) => !isAttributeContainer(value))) throw new Error(`\`${name}\` can only be applied to array of objects`);
  if (literalArguments === undefined) throw new Error(`arguments of \`${name}\` must be strings`);
  const [attribute, testName] = literalArguments;
  if (attribute === undefined) throw new InterpreterRequired(`${name} without an attribute`);
  let test: Test = truthy;
  if (testName !== undefined) {
    const named = TESTS.get(testName);
    if (named === undefined) throw new Error(`Unknown test: ${testName}`);
    test = named;
  }
  const testArgs = literalArguments.slice(2, 3);
  return items.filter((value) => {
    const entry = entryOf(value, attribute);
    return (entry.present && test(entry.value, ...testArgs)) === keep;
  });
}

function mapAttribute(items: readonly unknown[], { keyword }: Arguments): unknown[] {
  if (!keyword.has('attribute')) throw new Error('`map` expressions without `attribute` set are not currently supported.');
  const attribute = keyword.get('attribute');
  if (typeof attribute !== 'string') throw new Error('attribute must be a string');
  const fallback = keyword.get('default');
  return items.map((value) => {
    if (!isAttributeContainer(value)) throw new Error('items in map must be an object');
    const found = attributeAt(value, attribute);
    return found === undefined ? fallback : found;
  });
}

/** The package's dotted attribute path: "a.b" for nested entries, "items.0" for list items. */
function attributeAt(value: unknown, path: string): unknown {
  let current = value;
  for (const part of path.split('.')) {
    if (isAttributeContainer(current)) {
      current = entryOf(current, part).value;
    } else if (Array.isArray(current)) {
      const index = parseInt(part, 10);
      if (Number.isNaN(index) || index < 0 || index >= current.length) return undefined;
      current = current[index];
    } else {
      return undefined;
    }
  }
  return current;
}
