import { dictMethod, stringMember } from './jinja-plain-methods.js';
import {
  isDict, isInteger, hasEntry, looseEquals, numberResult, rawText, strictEquals, typeName, truthy,
  InterpreterRequired, Namespace, TemplateFunction,
  type Arguments, type Scope,
} from './jinja-plain-values.js';

// Operators, attribute and item access, slicing and calls on plain values, with the interpreter's
// rules and error messages (which are the package's, except for strings: PythonJinjaInterpreter's).

const isNumericLike = (value: unknown): value is number | boolean => typeof value === 'number' || typeof value === 'boolean';
const isFloat = (value: unknown) => typeof value === 'number' && !isInteger(value);

/** A binary operator other than `and` and `or` (which do not evaluate their right side first). */
export function binary(operator: string, left: unknown, right: unknown): unknown {
  if (operator === '==') return looseEquals(left, right);
  if (operator === '!=') return !looseEquals(left, right);
  const membership = operator === 'in' || operator === 'not in';
  if (left === undefined || right === undefined) {
    if (right === undefined && membership) return operator === 'not in';
    throw new Error(`Cannot perform operation ${operator} on undefined values`);
  }
  if (left === null || right === null) throw new Error('Cannot perform operation on null values');
  if (operator === '~') return rawText(left) + rawText(right);
  if (operator === '**' && isNumericLike(left) && isNumericLike(right)) return power(Number(left), Number(right), isFloat(left) || isFloat(right));
  if (typeof left === 'number' && typeof right === 'number') {
    const result = arithmetic(operator, left, right);
    if (result !== undefined) return result;
  } else if (Array.isArray(left) && Array.isArray(right)) {
    if (operator === '+') return left.concat(right);
  } else if (Array.isArray(right) && membership) {
    const member = right.some((item) => strictEquals(item, left));
    return operator === 'in' ? member : !member;
  }
  if (operator === '+' && (typeof left === 'string' || typeof right === 'string')) return rawText(left) + rawText(right);
  if (membership && typeof left === 'string') {
    if (typeof right === 'string') return right.includes(left) === (operator === 'in');
    if (isDict(right)) return hasEntry(right, left) === (operator === 'in');
  }
  throw new SyntaxError(`Unknown operator "${operator}" between ${typeName(left)} and ${typeName(right)}`);
}

function arithmetic(operator: string, a: number, b: number): number | boolean | undefined {
  const float = isFloat(a) || isFloat(b);
  switch (operator) {
    case '+': return numberResult(a + b, float);
    case '-': return numberResult(a - b, float);
    case '*': return numberResult(a * b, float);
    case '/': return numberResult(a / b, true);
    case '//': return numberResult(Math.floor(a / b), float);
    case '%': return numberResult(a % b, float);
    case '<': return a < b;
    case '>': return a > b;
    case '>=': return a >= b;
    case '<=': return a <= b;
    default: return undefined;
  }
}

function power(a: number, b: number, floatOperand: boolean): number {
  if (a === 0 && b < 0) throw new Error('0.0 cannot be raised to a negative power');
  const result = a ** b;
  if (!Number.isFinite(result)) throw new Error('Exponentiation result is not a finite real number');
  return numberResult(result, floatOperand || b < 0);
}

export function unary(operator: string, argument: unknown): unknown {
  if (operator === 'not') return !truthy(argument);
  if ((operator === '-' || operator === '+') && isNumericLike(argument)) {
    const value = (operator === '-' ? -1 : 1) * Number(argument);
    return typeof argument === 'number' ? value : numberResult(value, false);
  }
  if (operator === '-' || operator === '+') throw new SyntaxError(`Unknown operator "${operator}" for ${typeName(argument)}`);
  throw new SyntaxError(`Unknown operator: ${operator}`);
}

/** object.key and object[key] (not slices). */
export function member(object: unknown, key: unknown): unknown {
  if (isDict(object)) {
    if (typeof key !== 'string') throw new Error(`Cannot access property with non-string: got ${typeName(key)}`);
    if (hasEntry(object, key)) return object[key];
    const method = dictMethod(object, key);
    return method === undefined ? undefined : new TemplateFunction(method);
  }
  if (typeof object === 'string') return stringMember(object, key);
  if (Array.isArray(object)) {
    if (isInteger(key)) return object.at(key);
    if (typeof key !== 'string') throw new Error(`Cannot access property with non-string/non-number: got ${typeName(key)}`);
    return key === 'length' ? object.length : undefined;
  }
  if (typeof key !== 'string') throw new Error(`Cannot access property with non-string: got ${typeName(key)}`);
  return object instanceof Namespace ? object.entries.get(key) : undefined;
}

/** Checks what is sliced; its bounds are evaluated after this. */
export function sliceable(object: unknown): string | unknown[] {
  if (typeof object !== 'string' && !Array.isArray(object)) throw new Error('Slice object must be an array or string');
  return object;
}

/** object[start:stop:step], with the package's bounds (a list's slice is a list, a tuple's too). */
export function slice(object: string | unknown[], start: unknown, stop: unknown, step: unknown): string | unknown[] {
  const bound = (value: unknown, what: string) => {
    if (value !== undefined && !isInteger(value)) throw new Error(`Slice ${what} must be numeric or undefined`);
    return value;
  };
  const [from, to, by] = [bound(start, 'start'), bound(stop, 'stop'), bound(step, 'step')];
  if (typeof object === 'string') return sliceItems(Array.from(object), from, to, by).join('');
  return sliceItems(object, from, to, by);
}

function sliceItems<T>(items: readonly T[], start: number | undefined, stop: number | undefined, step = 1): T[] {
  const length = items.length;
  const out: T[] = [];
  if (step >= 0) {
    const from = start === undefined ? 0 : start < 0 ? Math.max(length + start, 0) : Math.min(start, length);
    const to = stop === undefined ? length : stop < 0 ? Math.max(length + stop, 0) : Math.min(stop, length);
    // A zero step takes nothing (Python raises; the package returns an empty slice).
    for (let i = from; step > 0 && i < to; i += step) out.push(items[i]!);
  } else {
    const from = start === undefined ? length - 1 : start < 0 ? Math.max(length + start, -1) : Math.min(start, length - 1);
    // Only a stop below -1 counts from the end here (the package's rule, not Python's).
    const to = stop === undefined ? -1 : stop < -1 ? Math.max(length + stop, -1) : Math.min(stop, length - 1);
    for (let i = from; i > to; i += step) out.push(items[i]!);
  }
  return out;
}

/**
 * Calls what a call expression names. A JavaScript function (a global such as raise_exception, or
 * a function among the variables) gets its arguments' underlying values, as the package passes
 * them (none's is undefined).
 */
export function call(callee: unknown, args: Arguments, caller: Scope): unknown {
  if (callee instanceof TemplateFunction) return callee.call(args, caller);
  if (typeof callee !== 'function') throw new Error(`Cannot call something that is not a function: got ${typeName(callee)}`);
  if (args.keyword.size > 0 || args.positional.some((arg) => (typeof arg === 'object' && arg !== null) || typeof arg === 'function')) {
    throw new InterpreterRequired('a JavaScript function called with keyword arguments, containers or functions');
  }
  const result: unknown = callee(...args.positional.map((arg) => arg ?? undefined)) ?? null;
  if (typeof result === 'bigint' || typeof result === 'symbol') throw new InterpreterRequired(`a JavaScript function returned a ${typeof result}`);
  return result;
}
