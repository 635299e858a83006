/**
 * The values compiled chat templates (jinja-compiler.ts) compute with: plain JavaScript values that
 * behave exactly as PythonJinjaInterpreter's runtime values do, without boxing each one.
 *
 * - undefined is Jinja's undefined, null is none; booleans and strings are themselves;
 * - a number is an integer when Number.isInteger, a float otherwise. A float with an integral value
 *   (2.0) has no plain form, so whatever would make one raises InterpreterRequired;
 * - an array is a list, or a tuple when made by tuple();
 * - Namespace is namespace(); TemplateFunction is a macro or a bound method; a JavaScript function
 *   (raise_exception, strftime_now, range) is called as the interpreter calls it;
 * - any other object is a dict (ObjectValue), whose entries are its own enumerable properties, in
 *   their JavaScript order (the order the interpreter's conversion gives them).
 */

/** A template the compiler cannot render exactly: render it with the interpreter instead. */
export class TemplateNotCompilable extends Error {
  override name = 'TemplateNotCompilable';
}

/**
 * A rendering met a value or an operation the compiled template does not model exactly (a float
 * with an integral value, a function printed or compared, ...): render it again with the interpreter.
 */
export class InterpreterRequired extends Error {
  override name = 'InterpreterRequired';
}

/** Jinja's namespace(): attributes assignable with `set ns.x = ...`. */
export class Namespace {
  constructor(readonly entries: Map<string, unknown>) {}
}

/** Arguments of a call: keyword arguments by name, in the order given. */
export interface Arguments {
  readonly positional: readonly unknown[];
  readonly keyword: ReadonlyMap<string, unknown>;
}
export const NO_ARGUMENTS: Arguments = { positional: [], keyword: new Map() };

/** A variable scope: the interpreter's Environment (a for loop and a macro call open one). */
export class Scope {
  readonly variables = new Map<string, unknown>();
  constructor(readonly parent: Scope | undefined) {}

  lookup(name: string): unknown {
    for (let scope: Scope | undefined = this; scope !== undefined; scope = scope.parent) {
      const value = scope.variables.get(name);
      if (value !== undefined || scope.variables.has(name)) return value;
    }
    return undefined;
  }
}

/** A function the template made: a macro, or a method bound to a value. It runs in its caller's scope. */
export class TemplateFunction {
  constructor(readonly call: (args: Arguments, caller: Scope) => unknown) {}
}

const tuples = new WeakSet<readonly unknown[]>();
export function tuple(items: unknown[]): unknown[] {
  tuples.add(items);
  return items;
}
export const isTuple = (value: unknown): boolean => Array.isArray(value) && tuples.has(value);

export const isCallable = (value: unknown): boolean => typeof value === 'function' || value instanceof TemplateFunction;

/** ObjectValue: neither null, nor a list, nor one of the template's own objects. */
export function isDict(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Namespace) && !(value instanceof TemplateFunction);
}

/** Whether a dict has an entry for `key` (the entry may hold undefined). */
export const hasEntry = (dict: Record<string, unknown>, key: string): boolean => Object.prototype.propertyIsEnumerable.call(dict, key);

export function hasAnyEntry(dict: Record<string, unknown>): boolean {
  for (const key in dict) if (hasEntry(dict, key)) return true;
  return false;
}

export const isInteger = (value: unknown): value is number => Number.isInteger(value);

/** The interpreter's name for the type of a value, as its error messages print it. */
export function typeName(value: unknown): string {
  switch (typeof value) {
    case 'undefined': return 'UndefinedValue';
    case 'boolean': return 'BooleanValue';
    case 'string': return 'StringValue';
    case 'number': return Number.isInteger(value) ? 'IntegerValue' : 'FloatValue';
    case 'function': return 'FunctionValue';
    case 'object':
      if (value === null) return 'NullValue';
      if (Array.isArray(value)) return tuples.has(value) ? 'TupleValue' : 'ArrayValue';
      if (value instanceof Namespace) return 'NamespaceValue';
      if (value instanceof TemplateFunction) return 'FunctionValue';
      return 'ObjectValue';
    default:
      throw new InterpreterRequired(`a ${typeof value} is not a template value`);
  }
}

/** Jinja truthiness (the interpreter's __bool__). */
export function truthy(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return !!value;
  if (Array.isArray(value)) return value.length > 0;
  if (value instanceof Namespace || value instanceof TemplateFunction) return true;
  return hasAnyEntry(value as Record<string, unknown>);
}

/** A number the interpreter would type as `float` when `isFloat`, else as an integer. */
export function numberResult(value: number, isFloat: boolean): number {
  if (Number.isInteger(value) === isFloat) {
    throw new InterpreterRequired(isFloat ? `the float ${value}.0` : `the non-finite integer ${value}`);
  }
  return value;
}

/**
 * How the interpreter prints a value (RuntimeValue.toString()): containers as the package's
 * JSON-like text, none as 'undefined' (the package's none holds undefined). A template's output
 * skips none and undefined; they show in the text of a list their items are joined into (rawText).
 */
export function printed(value: unknown): string {
  switch (typeof value) {
    case 'string': return value;
    case 'number':
    case 'boolean':
    case 'undefined':
      return String(value);
    case 'object':
      if (value === null) return 'undefined';
      if (value instanceof TemplateFunction) throw new InterpreterRequired('a function is printed');
      return containerText(value);
    default:
      throw new InterpreterRequired(`a ${typeof value} is printed`);
  }
}

/** The package's own JSON writer (not Python's): JSON.stringify for scalars, ', ' and ': ' between items. */
function containerText(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'function' || value instanceof TemplateFunction) throw new Error('Cannot convert to JSON: FunctionValue');
  if (typeof value !== 'object' || value === null) return JSON.stringify(value);
  if (Array.isArray(value)) {
    if (tuples.has(value)) throw new Error('Cannot convert to JSON: TupleValue');
    return `[${value.map(containerText).join(', ')}]`;
  }
  const entries = value instanceof Namespace ? [...value.entries] : Object.entries(value);
  return `{${entries.map(([key, item]) => `${JSON.stringify(key)}: ${containerText(item)}`).join(', ')}}`;
}

/**
 * JavaScript's String() of the interpreter's underlying value, which `~`, `+` on strings, the join
 * filter and == on a container use: a list joins its items' printed forms with ',', a dict is
 * '[object Map]'. Never called with none or undefined.
 */
export function rawText(value: unknown): string {
  if (typeof value !== 'object' || value === null) {
    if (typeof value === 'function') throw new InterpreterRequired('a function is converted to text');
    return String(value);
  }
  if (Array.isArray(value)) return value.map(printed).join(',');
  if (value instanceof TemplateFunction) throw new InterpreterRequired('a function is converted to text');
  return '[object Map]';
}

/** The interpreter's ==: JavaScript's loose equality of the underlying values. */
export function looseEquals(a: unknown, b: unknown): boolean {
  if (isCallable(a) || isCallable(b)) throw new InterpreterRequired('a function is compared');
  const aIsObject = typeof a === 'object' && a !== null;
  const bIsObject = typeof b === 'object' && b !== null;
  if (aIsObject === bIsObject) return aIsObject ? a === b : a == b;
  const [container, other] = aIsObject ? [a, b] : [b, a];
  if (other === null || other === undefined) return false;
  return rawText(container) == (other as string | number | boolean);
}

/** The interpreter's `in` on a list and equalto: strict equality of the underlying values (none's is undefined). */
export function strictEquals(a: unknown, b: unknown): boolean {
  if (isCallable(a) && isCallable(b)) throw new InterpreterRequired('a function is compared');
  return a === b || ((a === null || a === undefined) && (b === null || b === undefined));
}
