import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startApp, type App } from '../src/app.js';
import { explainCommand, formatLimits } from '../src/cli/explain.js';
import { loadLimitsFile, parseLimitsYaml } from '../src/config/load.js';
import type { LimitsExplanation } from '../src/config/provenance.js';
import { identify } from '../src/identity/identify.js';
import { mergeKubeState } from '../src/kube/merge.js';
import { createLogger } from '../src/telemetry/logger.js';
import { ADMIN, startTestApp, TEST_ADMIN_TOKEN, type TestApp } from './helpers/app.js';

/*
 * The adversarial review of issue 13: limit provenance (GET /v1/limits, tokenwarden explain) and
 * reloading (POST /v1/admin/reload, SIGHUP). Each case proves a fix; those named "holds" guard what
 * the review found sound.
 */

const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const ADMIN_TOKEN = 'review-13-admin';
const ADMIN_HEADERS = { authorization: `Bearer ${ADMIN_TOKEN}` };
type Answer = { user: string; groups: string[]; source: unknown; models: Array<{ model: string; limits: LimitsExplanation }> };

/** Runs `tokenwarden explain` from the sources, answering its exit status and what it printed. */
async function explain(args: string[]): Promise<{ code: number; stdout: string }> {
  const printed: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((text: string) => void printed.push(text));
  const error = vi.spyOn(console, 'error').mockImplementation((text: string) => void printed.push(text));
  try {
    return { code: await explainCommand(args), stdout: printed.join('\n') };
  } finally {
    log.mockRestore();
    error.mockRestore();
  }
}

describe('GET /v1/limits groups= means what the engine does with the JWT groups claim', () => {
  const GROUPS65 = Array.from({ length: 65 }, (_, i) => `g${i}`);
  const yaml = `
identity: { jwt: {} }
models: { m: {} }
defaults: { requestsPerMinute: 1 }
groups:
  " ops": { limits: { tokensPerDay: 1 } }
  ops: { limits: { tokensPerDay: 1000 } }
  "ml,eng": { limits: { tokensPerHour: 2 } }
  ml: { limits: { tokensPerHour: 2000 } }
${GROUPS65.map((g, i) => `  ${g}: { limits: { requestsPerMinute: ${i === 64 ? 999 : 2} } }`).join('\n')}
`;
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ configYaml: yaml, store: { kind: 'memory' } });
  });
  afterAll(() => t.close());

  /** What the engine enforces for a JWT caller whose groups claim is `claim`. */
  const enforced = (claim: string[]) => {
    const config = parseLimitsYaml(yaml, 'x');
    const id = identify(
      { headers: new Map(), filterMetadata: { 'envoy.filters.http.jwt_authn': { jwt_payload: { sub: 'alice', groups: claim } } } },
      config,
    );
    if ('error' in id) throw new Error(id.error);
    return config.limitsFor(id.user, 'm', id.groups);
  };
  const explained = async (groups: string[]) => {
    const query = new URLSearchParams([['model', 'm'], ...groups.map((g) => ['groups', g] as [string, string])]);
    const res = await fetch(`${t.http}/v1/limits/alice?${query}`, { headers: ADMIN });
    expect(res.status).toBe(200);
    return (await res.json()) as Answer;
  };

  it('a group name with surrounding spaces is explained as itself, not trimmed into another group', async () => {
    expect(enforced([' ops']).tokensPerDay).toBe(1);
    const answer = await explained([' ops']);
    expect(answer.groups).toEqual([' ops']);
    expect(answer.models[0]!.limits.tokensPerDay.enforced).toMatchObject({ value: 1, level: { kind: 'group', group: ' ops' } });
  });

  it('each groups= is one group: a name with a comma is not split', async () => {
    expect(enforced(['ml,eng']).tokensPerHour).toBe(2);
    const answer = await explained(['ml,eng']);
    expect(answer.groups).toEqual(['ml,eng']);
    expect(answer.models[0]!.limits.tokensPerHour.enforced).toMatchObject({ value: 2, level: { kind: 'group', group: 'ml,eng' } });
  });

  it('groups beyond the 64 the engine reads give no limit', async () => {
    expect(enforced(GROUPS65).requestsPerMinute).toBe(2);
    const answer = await explained(GROUPS65);
    expect(answer.groups).toEqual(GROUPS65.slice(0, 64));
    expect(answer.models[0]!.limits.requestsPerMinute.enforced).toMatchObject({ value: 2 });
  });

  it('tokenwarden explain sends each --group as one groups= value', async () => {
    const { code, stdout } = await explain(['alice', 'm', '--url', t.http, '--admin-token', TEST_ADMIN_TOKEN, '--group', 'ml,eng', '--json']);
    expect(code).toBe(0);
    const answer = JSON.parse(stdout) as Answer;
    expect(answer.groups).toEqual(['ml,eng']);
    expect(answer.models[0]!.limits.tokensPerHour.enforced).toMatchObject({ value: 2, level: { kind: 'group', group: 'ml,eng' } });
  });
});

describe('Kubernetes: provenance when the ConfigMap in force is the last good one', () => {
  const good = 'models: { m: {} }\nusers: { alice: { limits: { tokensPerDay: 100 } } }';
  const current = 'models: { m: {} }\nusers: { alice: { limits: { tokensPerDay: 100000 } } }\nbogus: 1';
  const configMap = { namespace: 'llm', name: 'tokenwarden-limits' };

  it('the source says the last good text is enforced, and why; a ConfigMap in force says nothing of the kind', () => {
    const merged = mergeKubeState({ configMapText: current, configMap, tokenQuotas: [], secrets: [] }, good);
    expect(merged.configMapError).toContain('bogus');
    const source = merged.snapshot!.source;
    expect(source).toMatchObject({ kind: 'configMap', key: 'limits.yaml', ...configMap, lastGood: { reason: merged.configMapError } });
    // Each limit's provenance carries it too: the operator finds 100000 in the ConfigMap.
    expect(merged.snapshot!.explainLimits('alice', 'm').tokensPerDay.enforced).toMatchObject({ value: 100, source });

    const fresh = mergeKubeState({ configMapText: good, configMap, tokenQuotas: [], secrets: [] }, good);
    expect(fresh.snapshot!.source).not.toHaveProperty('lastGood');
  });

  it('says so when the ConfigMap is gone and its last good text serves', () => {
    const merged = mergeKubeState({ configMapText: undefined, configMap, tokenQuotas: [], secrets: [] }, good);
    expect(merged.snapshot!.source).toMatchObject({ lastGood: { reason: expect.stringContaining('does not exist') } });
  });

  it('tokenwarden explain prints that the ConfigMap is not what is enforced, with the reason', () => {
    const merged = mergeKubeState({ configMapText: current, configMap, tokenQuotas: [], secrets: [] }, good);
    const snapshot = merged.snapshot!;
    const text = formatLimits({ user: 'alice', groups: [], source: snapshot.source, models: [{ model: 'm', limits: snapshot.explainLimits('alice', 'm') }] });
    const [header] = text.split('\n\n');
    expect(header).toContain('Configuration from ConfigMap llm/tokenwarden-limits (limits.yaml), last good text.');
    expect(header).toContain('its last good text is enforced');
    expect(header).toContain('bogus');
    expect(text).toMatch(/tokensPerDay\s+100\s+user alice — ConfigMap llm\/tokenwarden-limits \(limits\.yaml\), last good text/);
  });
});

describe('POST /v1/admin/reload', () => {
  let dir: string;
  let path: string;
  let app: App | undefined;
  let base: string;
  let logs: Array<Record<string, unknown>>;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tw-review13-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  const file = (extra = '', workers = 0) => `
admin: { tokenSha256: "${sha(ADMIN_TOKEN)}" }
tokenization: { workers: ${workers} }
models: { m: {} }
users: { alice: { limits: { tokensPerDay: 100 } } }
apiKeys:
  - { sha256: "${sha('alice-key')}", user: alice }
${extra}`;
  async function start(text = file()) {
    path = join(dir, `limits-${Math.random().toString(36).slice(2)}.yaml`);
    await writeFile(path, text);
    logs = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) logs.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    app = await startApp({
      grpcAddr: '127.0.0.1:0',
      httpAddr: '127.0.0.1:0',
      config: await loadLimitsFile(path),
      store: { kind: 'memory' },
      logger: createLogger('info', sink),
      reloadConfig: () => loadLimitsFile(path),
    });
    base = `http://127.0.0.1:${app.httpPort}`;
  }
  const reload = () => fetch(`${base}/v1/admin/reload`, { method: 'POST', headers: ADMIN_HEADERS });
  type Reloaded = { changed: string[]; restartRequired: string[] };

  it('reports a setting read only at start-up as restartRequired, not as changed, until the file gives the running value again', async () => {
    await start();
    await writeFile(path, file('metrics: { userLabel: true }', 2));
    const res = await reload();
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ changed: [], restartRequired: ['metrics.userLabel', 'tokenization.workers'] });
    const logged = logs.filter((l) => l['msg'] === 'limits reloaded');
    expect(logged.at(-1)).toMatchObject({ trigger: 'http', changed: [], restartRequired: ['metrics.userLabel', 'tokenization.workers'] });
    // Indeed not applied: the metrics built at start-up have no user label.
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).not.toContain('Tokens finally charged at settlement, by kind (prompt, completion) and model and user.');

    // Another reload, of something else: the restart is still needed.
    await writeFile(path, file('metrics: { userLabel: true }\ndefaults: { tokensPerDay: 5 }', 2));
    expect(await (await reload()).json()).toMatchObject({ changed: ['defaults.tokensPerDay'], restartRequired: ['metrics.userLabel', 'tokenization.workers'] });
    // Back to the values the process runs with: nothing waits for a restart, and nothing changed live.
    await writeFile(path, file('defaults: { tokensPerDay: 5 }'));
    expect(await (await reload()).json()).toMatchObject({ changed: [], restartRequired: [] });
  });

  it('never echoes the admin token hash (or API-key hashes) when refusing a file, in the answer or the log', async () => {
    await start();
    const h = sha(ADMIN_TOKEN);
    // An unclosed flow map on the admin line: a one-character typo.
    await writeFile(path, file().replace(`admin: { tokenSha256: "${h}" }`, `admin: { tokenSha256: "${h}"`));
    const res = await reload();
    expect(res.status).toBe(422);
    const text = await res.text();
    const logged = JSON.stringify(logs);
    expect(text).not.toContain(h.slice(0, 32));
    expect(logged).not.toContain(h.slice(0, 32));
  });

  it('holds: hashes never appear in a successful diff or its log; concurrent reloads each see a consistent before', async () => {
    await start();
    await writeFile(path, file().replace(sha('alice-key'), sha('alice-key-2')) + 'defaults: { tokensPerDay: 5 }\n');
    const [a, b] = await Promise.all([reload(), reload()]);
    const bodies = [await a.text(), await b.text()];
    expect(bodies.map((x) => (JSON.parse(x) as { changed: string[] }).changed).sort()).toEqual([[], ['defaults.tokensPerDay', 'apiKeys']]);
    for (const x of [...bodies, JSON.stringify(logs)]) {
      expect(x).not.toContain(sha('alice-key'));
      expect(x).not.toContain(sha('alice-key-2'));
      expect(x).not.toContain(sha(ADMIN_TOKEN));
    }
  });

  it('holds: an admin-token change is reported by path only; the old token stops working at once', async () => {
    await start();
    await writeFile(path, file().replace(sha(ADMIN_TOKEN), sha('new-admin')));
    const body = (await (await reload()).json()) as { changes: Array<Record<string, unknown>> };
    expect(body.changes).toEqual([{ path: ['admin', 'tokenSha256'] }]);
    expect((await reload()).status).toBe(401);
  });

  it('App.reload logs success and refusal itself, with the trigger, the file and the reason', async () => {
    await start();
    await writeFile(path, file('defaults: { tokensPerDay: 5 }'));
    await app!.reload('signal');
    expect(logs.filter((l) => l['msg'] === 'limits reloaded').at(-1)).toMatchObject({ trigger: 'signal', config: path, changed: ['defaults.tokensPerDay'], restartRequired: [] });
    await writeFile(path, 'nonsense: 1\n');
    await expect(app!.reload('signal')).rejects.toThrow(/nonsense/);
    const failed = logs.filter((l) => l['msg'] === 'limits reload failed; keeping the previous limits');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ level: 50, trigger: 'signal', config: path, err: expect.stringContaining('nonsense') });
    // The HTTP endpoint logs through the same path, once.
    expect((await reload()).status).toBe(422);
    const both = logs.filter((l) => l['msg'] === 'limits reload failed; keeping the previous limits');
    expect(both).toHaveLength(2);
    expect(both[1]).toMatchObject({ trigger: 'http', config: path });
  });
});

describe('user names that are dot segments', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({
      configYaml: `
models: { m: {} }
users: { "..": { limits: { tokensPerDay: 7 } }, ".": { limits: { tokensPerDay: 8 } } }
apiKeys:
  - { sha256: "${sha('dots-key')}", user: ".." }
`,
      store: { kind: 'memory' },
    });
  });
  afterAll(() => t.close());
  const get = (path: string, headers: Record<string, string> = ADMIN) => fetch(`${t.http}${path}`, { headers });

  it('GET /v1/limits?user= explains a user named ".." or "."', async () => {
    // As a path segment, %2E%2E is a dot segment: fetch sends /v1/, and a raw request gets the normal-form 400.
    expect((await get('/v1/limits/%2E%2E?model=m')).status).toBe(404);
    for (const [user, day] of [['..', 7], ['.', 8]] as const) {
      const res = await get(`/v1/limits?user=${encodeURIComponent(user)}&model=m`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as Answer;
      expect(body.user).toBe(user);
      expect(body.models[0]!.limits.tokensPerDay.enforced).toMatchObject({ value: day, level: { kind: 'user', user } });
    }
  });

  it('names exactly one user: none, two, or path and query together are refused', async () => {
    expect((await get('/v1/limits?model=m')).status).toBe(400);
    expect((await get('/v1/limits?user=')).status).toBe(400);
    expect((await get('/v1/limits?user=a&user=b')).status).toBe(400);
    expect((await get('/v1/limits/alice?user=bob')).status).toBe(400);
    expect((await get('/v1/limits?user=..', {})).status).toBe(401);
  });

  it('GET and DELETE /v1/usage?user= reach the user too, with the same rules as the path form', async () => {
    const admin = await get('/v1/usage?user=..&model=m');
    expect(admin.status).toBe(200);
    expect(((await admin.json()) as { user: string }).user).toBe('..');
    expect((await get('/v1/usage?user=..', { authorization: 'Bearer dots-key' })).status).toBe(200);
    expect((await get('/v1/usage?user=.', { authorization: 'Bearer dots-key' })).status).toBe(403);
    expect((await get('/v1/usage?user=..', {})).status).toBe(401);
    // Without ?user= an API key still reads its own user.
    expect(((await (await get('/v1/usage', { authorization: 'Bearer dots-key' })).json()) as { user: string }).user).toBe('..');
    expect((await fetch(`${t.http}/v1/usage?user=..`, { method: 'DELETE', headers: { authorization: 'Bearer dots-key' } })).status).toBe(401);
    expect((await fetch(`${t.http}/v1/usage?user=..`, { method: 'DELETE', headers: ADMIN })).status).toBe(204);
    expect((await fetch(`${t.http}/v1/usage`, { method: 'DELETE', headers: ADMIN })).status).toBe(400);
  });

  it('tokenwarden explain .. answers for that user', async () => {
    const { code, stdout } = await explain(['..', 'm', '--url', t.http, '--admin-token', TEST_ADMIN_TOKEN, '--json']);
    expect(code).toBe(0);
    const body = JSON.parse(stdout) as Answer;
    expect(body.user).toBe('..');
    expect(body.models[0]!.limits.tokensPerDay.enforced).toMatchObject({ value: 7 });
  });
});

/** tokenwarden as built, on a limits file; resolves once it logged "tokenwarden started", collecting its JSON log lines. */
async function spawnBuilt(path: string): Promise<{ server: ChildProcess; port: number; lines: Array<Record<string, unknown>> }> {
  const main = fileURLToPath(new URL('../dist/main.js', import.meta.url));
  expect(existsSync(main), 'run make build first').toBe(true);
  const server = spawn(process.execPath, [main, '--config', path, '--http-addr', '127.0.0.1:0', '--grpc-addr', '127.0.0.1:0'], {
    env: { ...process.env, TOKENWARDEN_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: Array<Record<string, unknown>> = [];
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: server.stdout! }).on('line', (line) => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        lines.push(entry);
        if (entry['msg'] === 'tokenwarden started') resolve(entry['httpPort'] as number);
      } catch {
        /* not JSON */
      }
    });
    server.once('exit', (code) => reject(new Error(`exited ${code}`)));
  });
  return { server, port, lines };
}

describe('SIGHUP and POST /v1/admin/reload log the same way', () => {
  let dir: string;
  let server: ChildProcess | undefined;
  afterAll(async () => {
    server?.kill('SIGTERM');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a refused file and a reload: the same fields, the trigger telling them apart', async () => {
    dir = await mkdtemp(join(tmpdir(), 'tw-review13-hup-'));
    const path = join(dir, 'limits.yaml');
    const good = (day: number) => `admin: { tokenSha256: "${sha('hup-admin')}" }\ntokenization: { workers: 0 }\nmodels: { m: {} }\ndefaults: { tokensPerDay: ${day} }\n`;
    await writeFile(path, good(1));
    const started = await spawnBuilt(path);
    server = started.server;
    const { port, lines } = started;
    const logged = (msg: string) => lines.filter((l) => l['msg'] === msg).map(({ time: _t, pid: _p, ...rest }) => rest);
    const waitFor = async (msg: string, n: number) => {
      for (let i = 0; i < 100 && logged(msg).length < n; i++) await new Promise((r) => setTimeout(r, 50));
    };
    const httpReload = () => fetch(`http://127.0.0.1:${port}/v1/admin/reload`, { method: 'POST', headers: { authorization: 'Bearer hup-admin' } });

    await writeFile(path, good(2));
    server.kill('SIGHUP');
    await waitFor('limits reloaded', 1);
    await writeFile(path, good(3));
    expect((await httpReload()).status).toBe(200);
    await waitFor('limits reloaded', 2);
    const [hupOk, httpOk] = logged('limits reloaded');
    expect(hupOk).toMatchObject({ trigger: 'signal', config: path, changed: ['defaults.tokensPerDay'], restartRequired: [] });
    expect(httpOk).toEqual({ ...hupOk, trigger: 'http' });

    const failed = 'limits reload failed; keeping the previous limits';
    await writeFile(path, 'nonsense: 1\n');
    server.kill('SIGHUP');
    await waitFor(failed, 1);
    expect((await httpReload()).status).toBe(422);
    await waitFor(failed, 2);
    const [hup, http] = logged(failed);
    expect(hup).toMatchObject({ trigger: 'signal', config: path, err: expect.stringContaining('nonsense') });
    expect(http).toEqual({ ...hup, trigger: 'http' });
  }, 30_000);
});

describe('SIGHUP while starting', () => {
  const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));
  it('holds: does not kill the process (a reload asked for while starting runs once started)', async () => {
    // A "Redis" that accepts and never answers keeps startApp in openStore for seconds: a realistic slow start.
    const sockets: Socket[] = [];
    let connected!: () => void;
    const seen = new Promise<void>((r) => (connected = r));
    const redis = createServer((s) => {
      sockets.push(s);
      connected();
    });
    await new Promise<void>((r) => redis.listen(0, '127.0.0.1', () => r()));
    const dir = await mkdtemp(join(tmpdir(), 'tw-review13-start-'));
    const path = join(dir, 'limits.yaml');
    await writeFile(path, 'tokenization: { workers: 0 }\nmodels: { m: {} }\n');
    const port = (redis.address() as { port: number }).port;
    const child = spawn(
      process.execPath,
      [MAIN, '--config', path, '--http-addr', '127.0.0.1:0', '--grpc-addr', '127.0.0.1:0', '--store', 'redis', '--redis-url', `redis://127.0.0.1:${port}`],
      { stdio: 'ignore' },
    );
    const exited = new Promise<NodeJS.Signals | null>((r) => child.once('exit', (_c, sig) => r(sig)));
    try {
      await seen;
      child.kill('SIGHUP');
      const outcome = await Promise.race([exited, new Promise((r) => setTimeout(() => r('alive'), 1500))]);
      expect(outcome).toBe('alive');
    } finally {
      child.kill('SIGKILL');
      sockets.forEach((s) => s.destroy());
      redis.close();
      await rm(dir, { recursive: true, force: true });
    }
  }, 20_000);
});
