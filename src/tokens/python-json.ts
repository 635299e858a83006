import { isMapping, isSequence, type JinjaValue } from './jinja-values.js';

export interface JsonDumpsOptions {
  readonly ensureAscii: boolean;
  /** null: one line; otherwise the string each nesting level is indented with. */
  readonly indent: string | null;
  /** [item separator, key separator]; null: Python's defaults for the indent. */
  readonly separators: readonly [string, string] | null;
  readonly sortKeys: boolean;
}

/**
 * Python's json.dumps, as transformers' tojson filter calls it. Its defaults separate items with
 * ', ' on one line and ',' when indented; floats print as Python's repr (1e-05, 1e+16, 2.0).
 */
export function pythonJsonDumps(value: JinjaValue, options: JsonDumpsOptions): string {
  const { indent, sortKeys } = options;
  const [itemSeparator, keySeparator] = options.separators ?? (indent === null ? [', ', ': '] : [',', ': ']);
  const quote = options.ensureAscii ? quoteAscii : quoteUnicode;

  const container = (open: string, close: string, parts: string[], level: number): string => {
    if (parts.length === 0) return open + close;
    if (indent === null) return open + parts.join(itemSeparator) + close;
    const newline = '\n' + indent.repeat(level + 1);
    return open + newline + parts.join(itemSeparator + newline) + '\n' + indent.repeat(level) + close;
  };

  const encode = (item: JinjaValue, level: number): string => {
    if (isSequence(item)) return container('[', ']', item.value.map((element) => encode(element, level + 1)), level);
    if (isMapping(item)) {
      const entries = [...item.value];
      if (sortKeys) entries.sort(([a], [b]) => compareCodePoints(a, b));
      return container('{', '}', entries.map(([key, element]) => quote(key) + keySeparator + encode(element, level + 1)), level);
    }
    switch (item.type) {
      case 'StringValue': return quote(item.value as string);
      case 'IntegerValue': return BigInt(item.value as number).toString();
      case 'FloatValue': return pythonFloat(item.value as number);
      case 'BooleanValue': return item.value ? 'true' : 'false';
      case 'NullValue': return 'null';
      default: throw new TypeError(`Object of type ${item.type.replace(/Value$/, '')} is not JSON serializable`);
    }
  };
  return encode(value, 0);
}

const SHORT_ESCAPES: Readonly<Record<string, string>> = { '"': '\\"', '\\': '\\\\', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t' };
const escape = (unit: string) => SHORT_ESCAPES[unit] ?? `\\u${unit.charCodeAt(0).toString(16).padStart(4, '0')}`;
// Without the u flag a character class matches UTF-16 units, so astral characters escape as surrogate pairs, as in Python.
const quoteUnicode = (text: string) => `"${text.replace(/["\\\x00-\x1f]/g, escape)}"`;
const quoteAscii = (text: string) => `"${text.replace(/["\\\x00-\x1f\x7f-\uffff]/g, escape)}"`;

/** repr(float) as json.dumps writes it: shortest round-trip digits, exponent below 1e-4 and from 1e16. */
function pythonFloat(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const [mantissa, exponentText] = Math.abs(x).toExponential().split('e') as [string, string];
  const exponent = Number(exponentText);
  if (exponent < -4 || exponent >= 16) return `${sign}${mantissa}e${exponent < 0 ? '-' : '+'}${String(Math.abs(exponent)).padStart(2, '0')}`;
  const digits = mantissa.replace('.', '');
  if (exponent < 0) return `${sign}0.${'0'.repeat(-exponent - 1)}${digits}`;
  const point = exponent + 1;
  return digits.length <= point ? `${sign}${digits.padEnd(point, '0')}.0` : `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

/** Python's string order: by code point (JavaScript's < compares UTF-16 units). */
function compareCodePoints(a: string, b: string): number {
  const x = Array.from(a, (char) => char.codePointAt(0)!);
  const y = Array.from(b, (char) => char.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}
