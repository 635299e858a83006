/*
 * Review 13c: what was attacked on /ui over HTTP and holds at a20810f (these pass).
 */
import { createHash } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type App } from '../src/app.js';
import { parseLimitsYaml } from '../src/config/load.js';
import { createLogger } from '../src/telemetry/logger.js';

const TOKEN = 'review-13c-holds-token';
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const YAML = `
defaults: { tokensPerMinute: 100000, requestsPerMinute: 3 }
models: { llama-3.2-1b: {} }
identity: { trustUserHeader: true }
maxBodyBytes: 4096
tokenization: { workers: 0 }
admin: { tokenSha256: "${sha(TOKEN)}" }
`;
const logText: string[] = [];
let app: App;
let base: string;
beforeAll(async () => {
  const sink = new Writable({ write(c, _e, cb) { logText.push(String(c)); cb(); } });
  app = await startApp({ grpcAddr: '127.0.0.1:0', httpAddr: '127.0.0.1:0', config: parseLimitsYaml(YAML, 'cfg'), store: { kind: 'memory' }, logger: createLogger('debug', sink as never), workerScript: new URL('../dist/tokens/count-worker.js', import.meta.url) });
  await app.tokenizers.settled();
  base = `http://127.0.0.1:${app.httpPort}`;
});
afterAll(async () => { await app.close(); });

/** The status line of a request sent byte for byte (request-target as given). */
function rawStatus(text: string): Promise<number> {
  return new Promise((resolve) => {
    let out = '';
    const s = connect(app.httpPort, '127.0.0.1', () => s.write(text));
    s.on('data', (d) => (out += d));
    s.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(out)?.[1] ?? 0)));
  });
}
function call(method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(new URL(path, base), { method, headers: { ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }), ...headers } }, (res) => {
      const c: Buffer[] = []; res.on('data', (d: Buffer) => c.push(d)); res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(c).toString() }));
    });
    req.on('error', reject); req.end(body);
  });
}
const FORM = { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-origin' };
const cookieOf = async () => (await call('POST', '/ui/login', FORM, `token=${TOKEN}`)).headers['set-cookie']![0]!.split(';')[0]!;

describe('review 13c: holds', () => {
  it('no path trick reaches /ui or leaves it: dot segments, //, backslashes, absolute-form are refused 400; encoded slashes are no /ui route', async () => {
    for (const p of ['/ui/../metrics', '//ui', '/ui/%2e%2e/metrics', '/./ui', '/ui/./api/top', '/ui\\..\\metrics', 'http://x/ui', '/v1/usage/../../ui', '/v1/usage/..\\..\\ui']) {
      expect(await rawStatus(`GET ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`), p).toBe(400);
    }
    for (const p of ['/ui%2Fapi%2Ftop', '/UI', '/ui/api/top/', '/ui/api//top', '/ui;/api/top', '/ui/api/__proto__']) {
      expect(await rawStatus(`GET ${p} HTTP/1.1\r\nHost: x\r\nx-tokenwarden-ui: 1\r\nConnection: close\r\n\r\n`), p).toBe(404);
    }
    for (const m of ['HEAD', 'OPTIONS', 'TRACE', 'PUT']) expect(await rawStatus(`${m} /ui HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`), m).toBe(405);
  });

  it('prototype names are plain names: users, models and JSON bodies with __proto__/constructor pollute nothing', async () => {
    const cookie = await cookieOf();
    const H = { cookie, 'x-tokenwarden-ui': '1' };
    for (const u of ['constructor', 'toString', 'hasOwnProperty', '__proto__', 'valueOf']) {
      const r = await call('GET', `/ui/api/user?user=${u}`, H);
      expect(r.status, u).toBe(200);
      expect(JSON.parse(r.body).user).toBe(u);
      expect((await call('GET', `/ui?user=${u}`, { cookie })).status).toBe(200);
    }
    for (const m of ['constructor', '__proto__', 'toString']) {
      expect((await call('POST', '/ui/api/count', { ...H, 'content-type': 'application/json' }, JSON.stringify({ model: m, text: 'x' }))).status, m).toBe(404);
    }
    expect((await call('POST', '/ui/api/count', { ...H, 'content-type': 'application/json' }, '{"__proto__":{"model":"llama-3.2-1b","text":"x"}}')).status).toBe(400);
    await call('POST', '/ui/api/count', { ...H, 'content-type': 'application/json' }, '{"model":"llama-3.2-1b","text":"x","__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}}}');
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    // Only the first token= is read: a second one is not a way in.
    expect((await call('POST', '/ui/login', FORM, `token=wrong&token=${TOKEN}`)).status).toBe(401);
  });

  it('the admin token appears in no log line, Location, Set-Cookie or body; the count endpoint is admin-only', async () => {
    await call('POST', '/ui/login', FORM, `token=${TOKEN}`);
    await call('POST', '/ui/login', FORM, `token=${TOKEN}x`);
    await call('GET', `/ui/login?token=${TOKEN}`);
    expect(logText.join('').includes(TOKEN)).toBe(false);
    const api = { 'x-tokenwarden-ui': '1', 'content-type': 'application/json' };
    const body = JSON.stringify({ model: 'llama-3.2-1b', text: 'hi' });
    expect((await call('POST', '/ui/api/count', api, body)).status).toBe(401);
    expect((await call('POST', '/ui/api/count', { ...api, authorization: `Bearer ${TOKEN}` }, body)).status).toBe(401);
  });
});
