/**
 * Binds a call's arguments to parameter names as Python does: positional first, then keywords; too
 * many positional arguments, an unknown keyword or a parameter given twice is a TypeError with
 * Python's wording. A parameter given nothing is `missing`.
 */
export function bindArguments<V, M>(
  positional: readonly V[],
  keyword: ReadonlyMap<string, V>,
  parameters: readonly string[],
  callee: string,
  missing: M,
): Array<V | M> {
  if (positional.length > parameters.length) {
    throw new TypeError(`${callee}() takes at most ${parameters.length} arguments (${positional.length} given)`);
  }
  const bound: Array<V | M> = parameters.map((_, i) => (i < positional.length ? positional[i]! : missing));
  for (const [name, value] of keyword) {
    const at = parameters.indexOf(name);
    if (at < 0) throw new TypeError(`${callee}() got an unexpected keyword argument '${name}'`);
    if (bound[at] !== missing) throw new TypeError(`${callee}() got multiple values for argument '${name}'`);
    bound[at] = value;
  }
  return bound;
}
