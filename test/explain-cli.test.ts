import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, TEST_ADMIN_TOKEN, type TestApp } from './helpers/app.js';

/*
 * `tokenwarden explain USER [MODEL]` as built (make build): the subcommand of dist/main.js asks a
 * running instance's GET /v1/limits/{user} and prints the provenance for a person.
 */
const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
    if (!('TOKENWARDEN_ADMIN_TOKEN' in env)) delete childEnv['TOKENWARDEN_ADMIN_TOKEN'];
    execFile(process.execPath, [MAIN, 'explain', ...args], { env: childEnv, timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** The table rows of the output: each line split on runs of two or more spaces. */
const rows = (stdout: string) =>
  stdout
    .split('\n')
    .map((line) => line.trim().split(/\s{2,}/))
    .filter((cells) => cells.length === 3);

describe('tokenwarden explain', () => {
  let t: TestApp;
  beforeAll(async () => {
    expect(existsSync(MAIN), 'run make build first').toBe(true);
    t = await startTestApp({
      configYaml: `
defaults: { tokensPerMinute: 1000, requestsPerMinute: 60 }
models: { m1: {}, m2: {} }
users:
  alice: { limits: { tokensPerDay: 800, shadow: { tokensPerDay: 500 } }, models: { m2: { tokensPerMinute: null } } }
groups:
  team: { models: { m1: { requestsPerMinute: 7 } } }
`,
      store: { kind: 'memory' },
    });
  });
  afterAll(() => t.close());

  it('prints limit, value and where it came from, shadow values marked, for one model', async () => {
    const { code, stdout, stderr } = await run(['alice', 'm1', '--url', t.http, '--admin-token', TEST_ADMIN_TOKEN, '--group', 'team']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toContain('alice on m1 (groups: team)');
    expect(stdout).toContain('Configuration from file test config.');
    expect(rows(stdout)).toEqual([
      ['LIMIT', 'VALUE', 'FROM'],
      ['tokensPerMinute', '1000', 'defaults — file test config'],
      ['tokensPerHour', 'unlimited', 'not set anywhere'],
      ['tokensPerDay', '800', 'user alice — file test config'],
      ['tokensPerDay (shadow)', '500', 'user alice — file test config'],
      ['tokensPerMonth', 'unlimited', 'not set anywhere'],
      ['requestsPerMinute', '7', 'group+model team / m1 — file test config'],
      ['maxConcurrentRequests', 'unlimited', 'not set anywhere'],
    ]);
  });

  it('covers every model without MODEL, shows null as unlimited at its level, and reads the token from the environment', async () => {
    const { code, stdout } = await run(['alice', '--url', `${t.http}/`], { TOKENWARDEN_ADMIN_TOKEN: TEST_ADMIN_TOKEN });
    expect(code).toBe(0);
    expect(stdout).toContain('alice on m1 (groups: none given)');
    expect(stdout).toContain('alice on m2 (groups: none given)');
    expect(rows(stdout)).toContainEqual(['tokensPerMinute', 'unlimited', 'null (unlimited) at user+model alice / m2 — file test config']);
    // Without the group, requestsPerMinute is the defaults'.
    expect(rows(stdout)).toContainEqual(['requestsPerMinute', '60', 'defaults — file test config']);
  });

  it('--json prints the API answer', async () => {
    const { code, stdout } = await run(['alice', 'm2', '--json', '--url', t.http, '--admin-token', TEST_ADMIN_TOKEN]);
    expect(code).toBe(0);
    const body = JSON.parse(stdout) as { models: Array<{ model: string; limits: Record<string, { enforced: { status: string } }> }> };
    expect(body.models.map((m) => m.model)).toEqual(['m2']);
    expect(body.models[0]!.limits['tokensPerMinute']!.enforced.status).toBe('unlimited');
  });

  it('fails with the reason: a wrong token (1), no token (2), an unknown model (1), nothing listening (1), no user (2)', async () => {
    const wrong = await run(['alice', '--url', t.http, '--admin-token', 'nope']);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('HTTP 401');
    expect(wrong.stdout).toBe('');
    const none = await run(['alice', '--url', t.http]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('TOKENWARDEN_ADMIN_TOKEN');
    const model = await run(['alice', 'ghost', '--url', t.http, '--admin-token', TEST_ADMIN_TOKEN]);
    expect(model.code).toBe(1);
    expect(model.stderr).toContain("HTTP 404: The model 'ghost' is not configured.");
    const closed = await run(['alice', '--url', 'http://127.0.0.1:1', '--admin-token', TEST_ADMIN_TOKEN]);
    expect(closed.code).toBe(1);
    expect(closed.stderr).toContain('cannot reach http://127.0.0.1:1');
    const usage = await run(['--admin-token', TEST_ADMIN_TOKEN]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('tokenwarden explain USER [MODEL]');
  });

  it('sends names percent-encoded and never prints control characters from them', async () => {
    const { code, stdout } = await run(['a/b\u001b[31m', 'm1', '--url', t.http, '--admin-token', TEST_ADMIN_TOKEN]);
    expect(code).toBe(0);
    expect(stdout).toContain('a/b\\u001b[31m on m1');
    expect(stdout).not.toContain('\u001b');
  });
});

describe('tokenwarden explain against the real process, across a SIGHUP reload', () => {
  let dir: string;
  let server: ChildProcess | undefined;
  afterAll(async () => {
    server?.kill('SIGTERM');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('shows the file path as the source, and the new value once SIGHUP reloaded the file', async () => {
    dir = await mkdtemp(join(tmpdir(), 'tw-explain-'));
    const path = join(dir, 'limits.yaml');
    const file = (day: number) => `
admin: { tokenSha256: "${createHash('sha256').update('cli-admin').digest('hex')}" }
tokenization: { workers: 0 }
models: { m: {} }
users: { alice: { limits: { tokensPerDay: ${day} } } }
`;
    await writeFile(path, file(111));
    server = spawn(process.execPath, [MAIN, '--config', path, '--http-addr', '127.0.0.1:0', '--grpc-addr', '127.0.0.1:0'], {
      env: { ...process.env, TOKENWARDEN_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const port = await new Promise<number>((resolve, reject) => {
      const lines = createInterface({ input: server!.stdout! });
      lines.on('line', (line) => {
        try {
          const entry = JSON.parse(line) as { msg?: string; httpPort?: number };
          if (entry.msg === 'tokenwarden started') resolve(entry.httpPort!);
        } catch {
          /* not a log line */
        }
      });
      server!.once('exit', (code) => reject(new Error(`tokenwarden exited (${code})`)));
    });
    const explainDay = async () => {
      const { code, stdout } = await run(['alice', 'm', '--url', `http://127.0.0.1:${port}`], { TOKENWARDEN_ADMIN_TOKEN: 'cli-admin' });
      expect(code).toBe(0);
      return rows(stdout).find((r) => r[0] === 'tokensPerDay');
    };
    expect(await explainDay()).toEqual(['tokensPerDay', '111', `user alice — file ${path}`]);
    await writeFile(path, file(222));
    server.kill('SIGHUP');
    const deadline = Date.now() + 10_000;
    let row = await explainDay();
    while (row?.[1] !== '222' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      row = await explainDay();
    }
    expect(row).toEqual(['tokensPerDay', '222', `user alice — file ${path}`]);
  }, 30_000);
});
