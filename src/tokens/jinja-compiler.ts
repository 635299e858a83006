import { compileFilter, TESTS, type Filter } from './jinja-plain-filters.js';
import { NAMESPACE } from './jinja-plain-methods.js';
import { binary, call, member, slice, sliceable, unary } from './jinja-plain-operators.js';
import {
  isDict, looseEquals, printed, tuple, typeName, truthy,
  InterpreterRequired, Namespace, NO_ARGUMENTS, Scope, TemplateFunction, TemplateNotCompilable,
  type Arguments,
} from './jinja-plain-values.js';

export { InterpreterRequired, TemplateNotCompilable } from './jinja-plain-values.js';

/**
 * Renders with these globals and variables (variables win, as in the interpreter's environment).
 * Throws InterpreterRequired when the rendering meets something it does not model exactly.
 */
export type CompiledTemplate = (globals: Readonly<Record<string, unknown>>, variables: Readonly<Record<string, unknown>>) => string;

/**
 * Compiles a template parsed by @huggingface/jinja (`new Template(source).parsed`) once into
 * JavaScript closures over plain values (jinja-plain-values.ts) that render what
 * PythonJinjaInterpreter renders, byte for byte, and throw the errors it throws. A construct it does
 * not support (call blocks, argument unpacking, most filters outside chat templates' needs, ...)
 * makes it throw TemplateNotCompilable.
 */
export function compileTemplate(program: unknown): CompiledTemplate {
  const root = program as ProgramNode;
  if (root?.type !== 'Program') throw new TemplateNotCompilable('not a parsed template');
  const render = new Compiler().block(root.body, false);
  return (globals, variables) => {
    const scope = new Scope(undefined);
    scope.variables.set('namespace', NAMESPACE);
    const containers = new Set<object>();
    for (const values of [globals, variables]) {
      for (const name of Object.keys(values)) {
        // The interpreter's environment refuses to declare namespace twice.
        if (name === 'namespace') throw new InterpreterRequired('a variable named namespace');
        const value = values[name];
        if (!convertsOneToOne(value, containers)) throw new InterpreterRequired(`the variable ${name} holds a bigint, a symbol or a shared object`);
        scope.variables.set(name, value);
      }
    }
    return render(scope);
  };
}

/**
 * Whether the interpreter's conversion of the variables gives each of their objects one runtime
 * value, so that identity (which its == and `in` compare) is the same for both. It converts an
 * object reached twice (shared or cyclic) twice, and throws on a bigint or a symbol.
 */
function convertsOneToOne(value: unknown, containers: Set<object>): boolean {
  switch (typeof value) {
    case 'bigint':
    case 'symbol':
      return false;
    case 'object': {
      if (value === null) return true;
      if (containers.has(value)) return false;
      containers.add(value);
      if (Array.isArray(value)) return value.every((item) => convertsOneToOne(item, containers));
      const dict = value as Record<string, unknown>;
      for (const key in dict) if (Object.prototype.hasOwnProperty.call(dict, key) && !convertsOneToOne(dict[key], containers)) return false;
      return true;
    }
    default:
      return true;
  }
}

// The syntax tree, as far as the compiler reads it (the package's typings do not resolve here).
interface Node { readonly type: string }
interface ProgramNode extends Node { body: Node[] }
interface LiteralNode<T> extends Node { value: T }
interface Identifier extends Node { value: string }
interface Token { value: string }
interface IfNode extends Node { test: Node; body: Node[]; alternate: Node[] }
interface ForNode extends Node { loopvar: Node; iterable: Node; body: Node[]; defaultBlock: Node[] }
interface SetNode extends Node { assignee: Node; value: Node | null; body: Node[] }
interface MacroNode extends Node { name: Identifier; args: Node[]; body: Node[] }
interface MemberNode extends Node { object: Node; property: Node; computed: boolean }
interface SliceNode extends Node { start?: Node; stop?: Node; step?: Node }
interface CallNode extends Node { callee: Node; args: Node[] }
interface BinaryNode extends Node { operator: Token; left: Node; right: Node }
interface UnaryNode extends Node { operator: Token; argument: Node }
interface FilterNode extends Node { operand: Node; filter: Node }
interface FilterStatementNode extends Node { filter: Node; body: Node[] }
interface TestNode extends Node { operand: Node; negate: boolean; test: Identifier }
interface SelectNode extends Node { lhs: Node; test: Node }
interface TernaryNode extends Node { condition: Node; trueExpr: Node; falseExpr: Node }
interface KeywordArgumentNode extends Node { key: Identifier; value: Node }

type Render = (scope: Scope) => string;
type Evaluate = (scope: Scope) => unknown;

// Thrown by {% break %} and {% continue %} to the loop around them, as the interpreter does: the
// iteration they end renders nothing.
const BREAK = Symbol('break');
const CONTINUE = Symbol('continue');

const constant = (value: unknown): Evaluate => () => value;
const printedStatement = (value: unknown) => (value === undefined || value === null ? '' : printed(value));
const ARRAY_INDEX = /^(?:0|[1-9]\d{0,9})$/;

class Compiler {
  /**
   * Whether the template names `loop` anywhere: for loops set it only then. Known once the whole
   * template is compiled, which is before anything renders.
   */
  private readsLoop = false;

  /** Statements in sequence; `inLoop`: inside a for loop's body, where break and continue may stand. */
  block(nodes: readonly Node[], inLoop: boolean): Render {
    const parts = nodes.map((node) => this.statement(node, inLoop));
    if (parts.length === 0) return () => '';
    if (parts.length === 1) return parts[0]!;
    return (scope) => {
      let out = '';
      for (const part of parts) out += part(scope);
      return out;
    };
  }

  private statement(node: Node, inLoop: boolean): Render {
    switch (node.type) {
      case 'StringLiteral': {
        const text = (node as LiteralNode<string>).value;
        return () => text;
      }
      case 'Comment': return () => '';
      case 'If': return this.ifStatement(node as IfNode, inLoop);
      case 'For': return this.forStatement(node as ForNode, inLoop);
      case 'Set': return this.setStatement(node as SetNode, inLoop);
      case 'Macro': return this.macro(node as MacroNode);
      case 'FilterStatement': {
        const { body, filter } = node as FilterStatementNode;
        const render = this.block(body, inLoop);
        const apply = this.filter(filter);
        return (scope) => printedStatement(apply(render(scope), scope));
      }
      case 'Break':
      case 'Continue': {
        if (!inLoop) throw new TemplateNotCompilable(`{% ${node.type.toLowerCase()} %} outside a for loop's body`);
        const signal = node.type === 'Break' ? BREAK : CONTINUE;
        return () => {
          throw signal;
        };
      }
      default: {
        const evaluate = this.expression(node);
        return (scope) => printedStatement(evaluate(scope));
      }
    }
  }

  private ifStatement({ test, body, alternate }: IfNode, inLoop: boolean): Render {
    const condition = this.expression(test);
    const then = this.block(body, inLoop);
    const otherwise = this.block(alternate, inLoop);
    return (scope) => (truthy(condition(scope)) ? then(scope) : otherwise(scope));
  }

  private forStatement(node: ForNode, inLoop: boolean): Render {
    const select = node.iterable.type === 'SelectExpression' ? (node.iterable as SelectNode) : undefined;
    const iterable = this.expression(select?.lhs ?? node.iterable);
    const condition = select && this.expression(select.test);
    const { check, assign } = this.loopVariables(node.loopvar);
    const body = this.block(node.body, true);
    const otherwise = this.block(node.defaultBlock, inLoop);
    return (scope) => {
      const loopScope = new Scope(scope);
      const collection = iterable(loopScope);
      let items: readonly unknown[];
      if (Array.isArray(collection)) items = collection;
      else if (isDict(collection)) items = Object.keys(collection);
      else throw new Error(`Expected iterable or object type in for loop: got ${typeName(collection)}`);
      if (check !== undefined || condition !== undefined) {
        items = items.filter((item) => {
          check?.(item);
          if (condition === undefined) return true;
          const itemScope = new Scope(loopScope);
          assign(itemScope, item);
          return truthy(condition(itemScope));
        });
      }
      let out = '';
      let iterated = false;
      const length = items.length;
      for (let i = 0; i < length; i++) {
        if (this.readsLoop) {
          loopScope.variables.set('loop', {
            index: i + 1,
            index0: i,
            revindex: length - i,
            revindex0: length - i - 1,
            first: i === 0,
            last: i === length - 1,
            length,
            previtem: i > 0 ? items[i - 1] : undefined,
            nextitem: i < length - 1 ? items[i + 1] : undefined,
          });
        }
        assign(loopScope, items[i]);
        try {
          out += body(loopScope);
        } catch (signal) {
          if (signal === CONTINUE) continue;
          if (signal === BREAK) break;
          throw signal;
        }
        iterated = true;
      }
      return iterated ? out : out + otherwise(loopScope);
    };
  }

  /** How a loop binds each item: `check` rejects items a tuple of names cannot unpack. */
  private loopVariables(target: Node): { check?: (item: unknown) => void; assign: (scope: Scope, item: unknown) => void } {
    if (target.type === 'Identifier') {
      const name = (target as Identifier).value;
      return { assign: (scope, item) => scope.variables.set(name, item) };
    }
    const names = this.tupleNames(target, 'loop variable');
    return {
      check: (item) => {
        // The package unpacks lists only (a tuple item is refused).
        if (typeName(item) !== 'ArrayValue') throw new Error(`Cannot unpack non-iterable type: ${typeName(item)}`);
        if ((item as unknown[]).length !== names.length) throw new Error(`Too ${names.length > (item as unknown[]).length ? 'few' : 'many'} items to unpack`);
      },
      assign: (scope, item) => names.forEach((name, i) => scope.variables.set(name, (item as unknown[])[i])),
    };
  }

  private tupleNames(target: Node, what: string): string[] {
    const items = target.type === 'TupleLiteral' ? (target as LiteralNode<Node[]>).value : undefined;
    if (items === undefined || !items.every((item) => item.type === 'Identifier')) {
      throw new TemplateNotCompilable(`a ${what} other than a name or a tuple of names`);
    }
    return items.map((item) => (item as Identifier).value);
  }

  private setStatement({ assignee, value, body }: SetNode, inLoop: boolean): Render {
    const evaluate: Evaluate = value === null ? this.block(body, inLoop) : this.expression(value);
    switch (assignee.type) {
      case 'Identifier': {
        const name = (assignee as Identifier).value;
        return (scope) => {
          scope.variables.set(name, evaluate(scope));
          return '';
        };
      }
      case 'TupleLiteral': {
        const names = this.tupleNames(assignee, 'set target');
        return (scope) => {
          const values = evaluate(scope);
          if (!Array.isArray(values)) throw new Error(`Cannot unpack non-iterable type in set: ${typeName(values)}`);
          if (values.length !== names.length) throw new Error(`Too ${names.length > values.length ? 'few' : 'many'} items to unpack in set`);
          names.forEach((name, i) => scope.variables.set(name, values[i]));
          return '';
        };
      }
      case 'MemberExpression': {
        const { object, property } = assignee as MemberNode;
        if (property.type !== 'Identifier') throw new TemplateNotCompilable('an assignment to a computed attribute');
        const target = this.expression(object);
        const name = (property as Identifier).value;
        return (scope) => {
          const assigned = evaluate(scope);
          const namespace = target(scope);
          if (!(namespace instanceof Namespace)) throw new Error('cannot assign attribute on non-namespace object');
          namespace.entries.set(name, assigned);
          return '';
        };
      }
      default:
        throw new TemplateNotCompilable(`an assignment to a ${assignee.type}`);
    }
  }

  /** A macro: called, it renders its body in a scope opened on its caller's (the interpreter's dynamic scoping). */
  private macro({ name: { value: name }, args: parameterNodes, body }: MacroNode): Render {
    const readsSpecialArgument = (node: Node) => isIdentifierNamed('kwargs')(node) || isIdentifierNamed('varargs')(node);
    if ([...parameterNodes, ...body].some((node) => someNode(node, readsSpecialArgument))) {
      throw new TemplateNotCompilable(`the macro ${name} reads kwargs or varargs`);
    }
    const parameters = parameterNodes.map((node) =>
      node.type === 'KeywordArgumentExpression'
        ? { name: (node as KeywordArgumentNode).key.value, fallback: this.expression((node as KeywordArgumentNode).value) }
        : { name: (node as Identifier).value, fallback: undefined },
    );
    const render = this.block(body, false);
    const invoke = ({ positional, keyword }: Arguments, caller: Scope): string => {
      const scope = new Scope(caller);
      const unused = new Map(keyword);
      const defaulted: Array<{ name: string; fallback: Evaluate }> = [];
      parameters.forEach(({ name: parameter, fallback }, i) => {
        let value: unknown;
        if (i < positional.length) {
          value = positional[i];
        } else if (unused.has(parameter)) {
          value = unused.get(parameter);
          unused.delete(parameter);
        } else if (fallback !== undefined) {
          defaulted.push({ name: parameter, fallback });
        }
        scope.variables.set(parameter, value);
      });
      if (unused.size > 0) throw new Error(`macro '${name}' takes no keyword argument '${unused.keys().next().value}'`);
      if (positional.length > parameters.length) throw new Error(`macro '${name}' takes not more than ${parameters.length} argument(s)`);
      for (const { name: parameter, fallback } of defaulted) scope.variables.set(parameter, fallback(scope));
      return render(scope);
    };
    return (scope) => {
      scope.variables.set(name, new TemplateFunction(invoke));
      return '';
    };
  }

  private expression(node: Node): Evaluate {
    switch (node.type) {
      case 'StringLiteral':
      case 'IntegerLiteral':
        return constant((node as LiteralNode<unknown>).value);
      case 'FloatLiteral': {
        const value = (node as LiteralNode<number>).value;
        if (Number.isInteger(value)) throw new TemplateNotCompilable(`the float literal ${value}.0 (a float with an integral value)`);
        return constant(value);
      }
      case 'Identifier': {
        const name = (node as Identifier).value;
        if (name === 'loop') this.readsLoop = true;
        return (scope) => scope.lookup(name);
      }
      case 'ArrayLiteral':
      case 'TupleLiteral': {
        const items = (node as LiteralNode<Node[]>).value.map((item) => this.expression(item));
        const make = node.type === 'TupleLiteral' ? tuple : (values: unknown[]) => values;
        return (scope) => make(items.map((item) => item(scope)));
      }
      case 'ObjectLiteral': return this.dict(node as LiteralNode<Map<Node, Node>>);
      case 'MemberExpression': return this.member(node as MemberNode);
      case 'CallExpression': {
        const { callee, args } = node as CallNode;
        const evaluateArguments = this.arguments(args);
        const evaluateCallee = this.expression(callee);
        return (scope) => {
          const values = evaluateArguments(scope);
          return call(evaluateCallee(scope), values, scope);
        };
      }
      case 'UnaryExpression': {
        const { operator, argument } = node as UnaryNode;
        const evaluate = this.expression(argument);
        if (operator.value === 'not') return (scope) => !truthy(evaluate(scope));
        return (scope) => unary(operator.value, evaluate(scope));
      }
      case 'BinaryExpression': return this.binary(node as BinaryNode);
      case 'FilterExpression': {
        const { operand, filter } = node as FilterNode;
        const evaluate = this.expression(operand);
        const apply = this.filter(filter);
        return (scope) => apply(evaluate(scope), scope);
      }
      case 'TestExpression': {
        const { operand, negate, test } = node as TestNode;
        const evaluate = this.expression(operand);
        const named = TESTS.get(test.value);
        if (named === undefined) {
          return (scope) => {
            evaluate(scope);
            throw new Error(`Unknown test: ${test.value}`);
          };
        }
        return (scope) => named(evaluate(scope)) !== negate;
      }
      case 'SelectExpression': {
        const { lhs, test } = node as SelectNode;
        const value = this.expression(lhs);
        const condition = this.expression(test);
        return (scope) => (truthy(condition(scope)) ? value(scope) : undefined);
      }
      case 'Ternary': {
        const { condition, trueExpr, falseExpr } = node as TernaryNode;
        const test = this.expression(condition);
        const then = this.expression(trueExpr);
        const otherwise = this.expression(falseExpr);
        return (scope) => (truthy(test(scope)) ? then(scope) : otherwise(scope));
      }
      default:
        throw new TemplateNotCompilable(`the ${node.type} node is not supported`);
    }
  }

  private dict(node: LiteralNode<Map<Node, Node>>): Evaluate {
    const entries = [...node.value].map(([key, value]) => [this.expression(key), this.expression(value)] as const);
    return (scope) => {
      const dict: Record<string, unknown> = Object.create(null);
      for (const [key, value] of entries) {
        const name = key(scope);
        if (typeof name !== 'string') throw new Error(`Object keys must be strings: got ${typeName(name)}`);
        // A plain object lists such keys first; the interpreter's Map keeps them where they were written.
        if (ARRAY_INDEX.test(name)) throw new InterpreterRequired(`the dict key '${name}'`);
        dict[name] = value(scope);
      }
      return dict;
    };
  }

  private member({ object, property, computed }: MemberNode): Evaluate {
    const target = this.expression(object);
    if (computed && property.type === 'SliceExpression') {
      const { start, stop, step } = property as SliceNode;
      const [from, to, by] = [start, stop, step].map((bound) => (bound === undefined ? constant(undefined) : this.expression(bound))) as [Evaluate, Evaluate, Evaluate];
      return (scope) => {
        const sliced = sliceable(target(scope));
        return slice(sliced, from(scope), to(scope), by(scope));
      };
    }
    if (computed) {
      const key = this.expression(property);
      return (scope) => {
        const value = target(scope);
        return member(value, key(scope));
      };
    }
    const key = (property as LiteralNode<string | number>).value;
    return (scope) => member(target(scope), key);
  }

  private binary({ operator: { value: operator }, left, right }: BinaryNode): Evaluate {
    const first = this.expression(left);
    const second = this.expression(right);
    switch (operator) {
      case 'and':
        return (scope) => {
          const value = first(scope);
          return truthy(value) ? second(scope) : value;
        };
      case 'or':
        return (scope) => {
          const value = first(scope);
          return truthy(value) ? value : second(scope);
        };
      case '==':
        return (scope) => looseEquals(first(scope), second(scope));
      case '+':
        return (scope) => {
          const a = first(scope);
          const b = second(scope);
          return typeof a === 'string' && typeof b === 'string' ? a + b : binary(operator, a, b);
        };
      default:
        return (scope) => binary(operator, first(scope), second(scope));
    }
  }

  /** A filter, applied to an evaluated operand in a scope (where its arguments are evaluated). */
  private filter(node: Node): (operand: unknown, scope: Scope) => unknown {
    if (node.type === 'Identifier') {
      const apply = compileFilter((node as Identifier).value, false, undefined);
      const none = () => NO_ARGUMENTS;
      return (operand) => apply(operand, none);
    }
    const { callee, args } = node as CallNode;
    if (node.type !== 'CallExpression' || callee?.type !== 'Identifier') throw new TemplateNotCompilable(`a ${node.type} as a filter`);
    const literals = args.every((arg) => arg.type === 'StringLiteral') ? args.map((arg) => (arg as LiteralNode<string>).value) : undefined;
    const apply: Filter = compileFilter((callee as Identifier).value, true, literals);
    const evaluateArguments = this.arguments(args);
    return (operand, scope) => apply(operand, () => evaluateArguments(scope));
  }

  /** Call arguments: positional ones first, then keyword ones (the parser puts them in that order). */
  private arguments(nodes: readonly Node[]): (scope: Scope) => Arguments {
    if (nodes.length === 0) return () => NO_ARGUMENTS;
    const positional: Evaluate[] = [];
    const keyword: Array<[string, Evaluate]> = [];
    for (const node of nodes) {
      if (node.type === 'SpreadExpression' || node.type === 'KeywordSpreadExpression') throw new TemplateNotCompilable('argument unpacking (* or **)');
      if (node.type !== 'KeywordArgumentExpression') {
        positional.push(this.expression(node));
        continue;
      }
      const { key, value } = node as KeywordArgumentNode;
      if (keyword.some(([name]) => name === key.value)) throw new TemplateNotCompilable(`the keyword argument ${key.value} given twice`);
      keyword.push([key.value, this.expression(value)]);
    }
    return (scope) => ({
      positional: positional.map((evaluate) => evaluate(scope)),
      keyword: keyword.length === 0 ? NO_ARGUMENTS.keyword : new Map(keyword.map(([name, evaluate]) => [name, evaluate(scope)])),
    });
  }
}

const isIdentifierNamed = (name: string) => (node: Node) => node.type === 'Identifier' && (node as Identifier).value === name;

/** Whether a node in the tree satisfies `predicate`. */
function someNode(node: Node, predicate: (node: Node) => boolean): boolean {
  return predicate(node) || childrenOf(node).some((child) => someNode(child, predicate));
}

/** A node's child nodes: its fields that are nodes, lists of nodes, or an object literal's map (not operator tokens). */
function childrenOf(node: Node): Node[] {
  const fields = Object.entries(node).flatMap(([key, value]: [string, unknown]) => {
    if (key === 'operator') return [];
    if (value instanceof Map) return [...value.keys(), ...value.values()] as unknown[];
    return Array.isArray(value) ? value : [value];
  });
  return fields.filter((field): field is Node => typeof (field as Node | null)?.type === 'string');
}
