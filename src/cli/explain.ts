import { parseArgs } from 'node:util';
import { describeLevel, describeSource, type LimitOrigin, type LimitsExplanation, type LimitSource } from '../config/provenance.js';
import { LIMIT_NAMES } from '../limit-kinds.js';

const USAGE = `tokenwarden explain USER [MODEL] — where each of USER's limits comes from, asked of a running instance

  --url URL            tokenwarden's HTTP address              [http://127.0.0.1:8080]
  --admin-token TOKEN  the admin token (else TOKENWARDEN_ADMIN_TOKEN)
  --group NAME         a group USER's JWT would carry (group limits apply to members); once per
                       group, each name as the JWT gives it
  --json               print the answer of GET /v1/limits?user=USER as it came

Without MODEL, every configured model. Exit status: 0 answered, 1 the instance refused or could not
be reached, 2 wrong usage.`;

/** The answer of GET /v1/limits?user=USER. */
interface LimitsAnswer {
  readonly user: string;
  readonly groups: readonly string[];
  readonly source: LimitSource;
  readonly models: ReadonlyArray<{ readonly model: string; readonly limits: LimitsExplanation }>;
}

/** `tokenwarden explain ...` (argv after "explain"); resolves to the exit status. */
export async function explainCommand(argv: readonly string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        url: { type: 'string', default: 'http://127.0.0.1:8080' },
        'admin-token': { type: 'string' },
        group: { type: 'string', multiple: true },
        json: { type: 'boolean' },
        help: { type: 'boolean' },
      },
    });
  } catch (err) {
    console.error(`tokenwarden explain: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length < 1 || positionals.length > 2) {
    console.error(`tokenwarden explain: give a user, and optionally a model\n\n${USAGE}`);
    return 2;
  }
  const [user, model] = positionals as [string, string | undefined];
  const token = values['admin-token'] ?? process.env['TOKENWARDEN_ADMIN_TOKEN'];
  if (!token) {
    console.error('tokenwarden explain: the admin token is needed: --admin-token or TOKENWARDEN_ADMIN_TOKEN');
    return 2;
  }
  let url: URL;
  try {
    url = new URL('v1/limits', values.url.endsWith('/') ? values.url : `${values.url}/`);
  } catch {
    console.error(`tokenwarden explain: --url ${values.url} is not a URL`);
    return 2;
  }
  // ?user=, not a path segment: a user named ".." or "." is a dot segment there, never a name.
  url.searchParams.set('user', user);
  if (model !== undefined) url.searchParams.set('model', model);
  for (const group of values.group ?? []) url.searchParams.append('groups', group);

  let response: Response;
  try {
    response = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    const cause = (err as { cause?: { message?: string } }).cause?.message;
    console.error(`tokenwarden explain: cannot reach ${values.url}: ${cause ?? (err as Error).message}`);
    return 1;
  }
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!response.ok) {
    const message = (body as { error?: { message?: string } } | undefined)?.error?.message ?? text.slice(0, 500);
    console.error(`tokenwarden explain: HTTP ${response.status}: ${safe(message)}`);
    return 1;
  }
  if (values.json) {
    console.log(JSON.stringify(body, null, 2));
    return 0;
  }
  console.log(formatLimits(body as LimitsAnswer));
  return 0;
}

/** The answer as a person reads it: per model a table of limit, value and where it came from; shadow values on their own rows. */
export function formatLimits(answer: LimitsAnswer): string {
  const groups = answer.groups.length ? answer.groups.map(safe).join(', ') : 'none given';
  const blocks = answer.models.map(({ model, limits }) => {
    const rows: Array<[string, string, string]> = [['LIMIT', 'VALUE', 'FROM']];
    for (const name of LIMIT_NAMES) {
      const explanation = limits[name];
      if (explanation === undefined) continue;
      rows.push([name, valueOf(explanation.enforced), fromWhere(explanation.enforced)]);
      if (explanation.shadow.status !== 'unset') rows.push([`${name} (shadow)`, valueOf(explanation.shadow), fromWhere(explanation.shadow)]);
    }
    const widths = [0, 1].map((col) => Math.max(...rows.map((row) => row[col]!.length)));
    const table = rows.map(([a, b, c]) => `  ${a.padEnd(widths[0]!)}  ${b.padEnd(widths[1]!)}  ${c}`.trimEnd()).join('\n');
    return `${safe(answer.user)} on ${safe(model)} (groups: ${groups})\n${table}`;
  });
  const legend = 'Shadow values are counted and reported, never deny. Most specific wins: user+model > user > group+model > group > model > defaults.';
  return [`Configuration from ${safe(describeSource(answer.source))}.${staleness(answer.source)}`, ...blocks, legend].join('\n\n');
}

/** Why the ConfigMap's last good text is enforced rather than its current one (nothing when it is not). */
function staleness(source: LimitSource): string {
  if (source.kind !== 'configMap' || source.lastGood === undefined) return '';
  const reason = source.lastGood.reason.split('\n').map(safe).join('\n  ');
  return `\nIts current text is refused, so its last good text is enforced (the ConfigMap does not show what is enforced):\n  ${reason}`;
}

function valueOf(origin: LimitOrigin): string {
  return origin.status === 'limited' ? String(origin.value) : 'unlimited';
}

function fromWhere(origin: LimitOrigin): string {
  if (origin.status === 'unset') return 'not set anywhere';
  const where = `${describeLevel(origin.level)} — ${describeSource(origin.source)}`;
  return safe(origin.status === 'unlimited' ? `null (unlimited) at ${where}` : where);
}

/** Names are data from the configuration: control characters are shown escaped, never sent to the terminal. */
function safe(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
