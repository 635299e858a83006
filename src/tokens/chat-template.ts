import { Environment, Template } from '@huggingface/jinja';
import { wallClock } from '../zoned-time.js';
import { compileTemplate, InterpreterRequired, TemplateNotCompilable, type CompiledTemplate } from './jinja-compiler.js';
import { PythonJinjaInterpreter } from './python-jinja.js';

/** A template called raise_exception, or failed to render: the request is malformed for this model. */
export class ChatTemplateError extends Error {
  override name = 'ChatTemplateError';
}

export type Clock = () => number;

/** What a rendering read of the clock: strftime_now's format and what it printed. */
export type ClockReads = ReadonlyArray<readonly [format: string, printed: string]>;

/**
 * A Hugging Face chat template, rendered the way transformers' apply_chat_template does (the path
 * vLLM takes): trim_blocks and lstrip_blocks, and the globals raise_exception and strftime_now.
 * String filters and methods and tojson follow Python's semantics (see PythonJinjaInterpreter).
 * strftime_now reads `clock` in `timeZone` with English (C locale) names, as Python's strftime does
 * on a model server running in UTC, instead of this process's own zone and locale.
 *
 * The template is compiled once to JavaScript closures (jinja-compiler.ts), which render what
 * PythonJinjaInterpreter renders without its per-value boxing. A template the compiler refuses,
 * and a rendering it cannot do exactly (InterpreterRequired), are rendered by the interpreter.
 */
export class ChatTemplate {
  private readonly parsed: Template['parsed'];
  private readonly compiled: CompiledTemplate | undefined;
  /** strftime_now's results within the current second (formatting a zoned time is costly). */
  private printedThisSecond = { second: NaN, byFormat: new Map<string, string>() };

  constructor(
    source: string,
    private readonly timeZone: string = 'UTC',
    private readonly clock: Clock = Date.now,
  ) {
    try {
      this.parsed = new Template(source).parsed;
    } catch (err) {
      throw new ChatTemplateError(`chat template does not parse: ${(err as Error).message}`);
    }
    this.compiled = compiledOrUndefined(this.parsed);
  }

  render(variables: Readonly<Record<string, unknown>>): string {
    return this.renderReadingClock(variables).text;
  }

  /** The rendering, and every strftime_now it called: the same variables render the same while those print the same. */
  renderReadingClock(variables: Readonly<Record<string, unknown>>): { text: string; clockReads: ClockReads } {
    const clockReads: Array<[string, string]> = [];
    const globals: Record<string, unknown> = {
      false: false,
      true: true,
      none: null,
      False: false,
      True: true,
      None: null,
      range,
      raise_exception: (message: unknown) => {
        throw new ChatTemplateError(String(message));
      },
      strftime_now: (format: unknown) => {
        const printed = this.strftimeNow(String(format));
        clockReads.push([String(format), printed]);
        return printed;
      },
    };
    if (this.compiled !== undefined) {
      try {
        return { text: this.compiled(globals, variables), clockReads };
      } catch (err) {
        if (!(err instanceof InterpreterRequired)) throw templateError(err);
        clockReads.length = 0;
      }
    }
    return { text: this.interpret(globals, variables), clockReads };
  }

  /** Whether strftime_now would print now what it printed for an earlier rendering. */
  clockReadsHold(reads: ClockReads): boolean {
    return reads.every(([format, printed]) => this.strftimeNow(format) === printed);
  }

  private interpret(globals: Readonly<Record<string, unknown>>, variables: Readonly<Record<string, unknown>>): string {
    const env = new Environment();
    for (const [name, value] of Object.entries({ ...globals, ...variables })) env.set(name, value);
    try {
      return new PythonJinjaInterpreter(env).run(this.parsed).value as string;
    } catch (err) {
      throw templateError(err);
    }
  }

  private strftimeNow(format: string): string {
    const now = this.clock();
    const second = Math.floor(now / 1000);
    if (this.printedThisSecond.second !== second) this.printedThisSecond = { second, byFormat: new Map() };
    let printed = this.printedThisSecond.byFormat.get(format);
    if (printed === undefined) {
      printed = strftime(now, format, this.timeZone);
      this.printedThisSecond.byFormat.set(format, printed);
    }
    return printed;
  }
}

function compiledOrUndefined(parsed: Template['parsed']): CompiledTemplate | undefined {
  try {
    return compileTemplate(parsed);
  } catch (err) {
    if (err instanceof TemplateNotCompilable) return undefined;
    throw err;
  }
}

function templateError(err: unknown): ChatTemplateError {
  if (err instanceof ChatTemplateError) return err;
  return new ChatTemplateError(`chat template failed: ${(err as Error).message}`);
}

function range(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new ChatTemplateError('range() step must not be zero');
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

/** Python's strftime for the common directives, C locale. */
export function strftime(ms: number, format: string, timeZone: string): string {
  const { year, month, day, hour, minute, second, weekday } = wallClock(ms, timeZone);
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  const dayOfYear = Math.round((Date.UTC(year, month - 1, day) - Date.UTC(year, 0, 1)) / 86_400_000) + 1;
  return format.replace(/%([a-zA-Z%])/g, (whole, directive: string) => {
    switch (directive) {
      case 'Y': return String(year);
      case 'y': return pad(year % 100);
      case 'm': return pad(month);
      case 'd': return pad(day);
      case 'e': return String(day).padStart(2, ' ');
      case 'b': return MONTHS[month - 1]!.slice(0, 3);
      case 'B': return MONTHS[month - 1]!;
      case 'a': return DAYS[weekday]!.slice(0, 3);
      case 'A': return DAYS[weekday]!;
      case 'H': return pad(hour);
      case 'I': return pad(hour % 12 === 0 ? 12 : hour % 12);
      case 'p': return hour < 12 ? 'AM' : 'PM';
      case 'M': return pad(minute);
      case 'S': return pad(second);
      case 'j': return pad(dayOfYear, 3);
      case '%': return '%';
      default: return whole;
    }
  });
}
