import { Environment, Interpreter } from '@huggingface/jinja';

// The parts of @huggingface/jinja's runtime this code relies on, typed here: the package exports
// its interpreter but not its value classes, and its bundled typings do not resolve under NodeNext.

/** A runtime value (StringValue, ArrayValue, ...). */
export interface JinjaValue {
  readonly type: string;
  readonly value: unknown;
  __bool__(): { readonly value: boolean };
}
/** A syntax tree node. */
export interface JinjaNode {
  readonly type: string;
}
/** A scope of variables; it carries the tests (`is defined`, `equalto`, ...). */
export interface JinjaScope {
  readonly tests: ReadonlyMap<string, (...values: JinjaValue[]) => boolean>;
}
interface InterpreterApi {
  run(program: unknown): JinjaValue;
  evaluate(node: JinjaNode | undefined, scope: JinjaScope): JinjaValue;
}
export const JinjaInterpreter = Interpreter as new (scope: JinjaScope) => InterpreterApi;

type JinjaFunction = (args: JinjaValue[], scope: JinjaScope) => JinjaValue;
// Each value class, reached through a value the package itself makes from a JavaScript sample.
const classOf = <T>(sample: unknown) => (new Environment().set('sample', sample) as JinjaValue).constructor as new (value: T) => JinjaValue;
const StringValue = classOf<string>('');
const IntegerValue = classOf<number>(0);
const BooleanValue = classOf<boolean>(false);
const ArrayValue = classOf<JinjaValue[]>([]);
const FunctionValue = classOf<JinjaFunction>(() => null);
const UndefinedValue = classOf<undefined>(undefined);

export const jinjaString = (value: string): JinjaValue => new StringValue(value);
export const jinjaInteger = (value: number): JinjaValue => new IntegerValue(value);
export const jinjaBoolean = (value: boolean): JinjaValue => new BooleanValue(value);
export const jinjaArray = (items: JinjaValue[]): JinjaValue => new ArrayValue(items);
export const jinjaFunction = (call: JinjaFunction): JinjaValue => new FunctionValue(call);
export const jinjaUndefined = (): JinjaValue => new UndefinedValue(undefined);

export const isString = (value: JinjaValue): value is JinjaValue & { readonly value: string } => value.type === 'StringValue';
export const isInteger = (value: JinjaValue): value is JinjaValue & { readonly value: number } => value.type === 'IntegerValue';
/** A list or a tuple. */
export const isSequence = (value: JinjaValue): value is JinjaValue & { readonly value: JinjaValue[] } =>
  value.type === 'ArrayValue' || value.type === 'TupleValue';
export const isMapping = (value: JinjaValue): value is JinjaValue & { readonly value: Map<string, JinjaValue> } => value.type === 'ObjectValue';
/** The value, or undefined for Python's None (Jinja's none) and for an argument not given. */
export const unlessNone = (value: JinjaValue | undefined): JinjaValue | undefined => (value?.type === 'NullValue' ? undefined : value);
