/*
 * Review 13c: hostile names and cross-site pages against /ui in Debian's Chromium; these pass at a20810f.
 */
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLimitsYaml } from '../src/config/load.js';
import { AccessLogStandIn } from './helpers/access-log-stand-in.js';
import { startTestApp, TEST_ADMIN_TOKEN, type TestApp } from './helpers/app.js';

declare const document: any;
declare const window: any;
const MODELS = ['<img src=x onerror=window.__m=1>', '"><svg onload=window.__m2=1>'];
const USERS = ['<img src=x onerror=window.__u=1>', 'javascript:window.__j=1', '"><svg/onload=window.__s=1>', "' onmouseover='window.__q=1", '</script><script>window.__t=1</script>'];
const YAML = `
defaults: { tokensPerMinute: 100000, requestsPerMinute: 2 }
models:
${MODELS.map((m) => `  ${JSON.stringify(m)}: {}`).join('\n')}
identity: { trustUserHeader: true }
tokenization: { workers: 0 }
admin: { tokenSha256: "${createHash('sha256').update(TEST_ADMIN_TOKEN).digest('hex')}" }
`;
let t: TestApp;
let als: AccessLogStandIn;
let browser: Browser;
let evil: Server;
let evilHtml = '';

beforeAll(async () => {
  t = await startTestApp({ configYaml: YAML, store: { kind: 'memory' } });
  // A hostile config path too: it is shown as "limits from file …".
  t.app.setConfig(parseLimitsYaml(YAML, '"><img src=x onerror=window.__src=1>.yaml'));
  als = new AccessLogStandIn(t.app.grpcPort);
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] });
  evil = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/html' }); res.end(evilHtml); });
  await new Promise<void>((r) => evil.listen(0, '127.0.0.1', () => r()));
}, 60_000);
afterAll(async () => { await browser?.close(); evil?.close(); await als?.end(); als?.close(); await t?.close(); });

describe('review 13c in Chromium: holds', () => {
  it('hostile user, model and source names render as text (server HTML and script DOM), and cross-site pages can neither post, read, nor frame', async () => {
    for (const u of USERS) for (const m of MODELS) for (let i = 0; i < 3; i++) {
      const r = await t.envoy.check({ headers: { 'x-user-id': u }, body: { model: m, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5 } });
      if (r.status === 200) als.send([{ requestId: r.requestId, responseCode: 200, authzMetadata: r.metadata, usage: { promptTokens: r.metadata['prompt_tokens'] as number, completionTokens: 3 } }]);
    }
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const problems: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
    page.on('pageerror', (e) => problems.push(`pageerror ${e.message}`));
    await page.addInitScript(() => document.addEventListener('securitypolicyviolation', (e: any) => console.error(`CSP ${e.violatedDirective}`)));
    await page.goto(`${t.http}/ui`);
    await page.fill('#token', TEST_ADMIN_TOKEN);
    await Promise.all([page.waitForURL(`${t.http}/ui`), page.click('button[type=submit]')]);
    await page.waitForSelector('#live');
    await expect.poll(async () => { await page.reload(); return page.locator('#top-users tbody tr').count(); }, { timeout: 10_000 }).toBe(USERS.length);
    for (const u of USERS) {
      await page.goto(`${t.http}/ui?user=${encodeURIComponent(u)}`);
      await page.locator('[data-user-report]').waitFor();
      expect(await page.locator('[data-user-report] .user-name').textContent()).toBe(u);
      await page.click('#top-users a >> nth=0');
      await page.waitForTimeout(200);
    }
    await page.selectOption('#count-model', { index: 1 });
    await page.fill('#count-text', '<img src=x onerror=window.__c=1>');
    await page.click('#count-form button[type=submit]');
    await page.locator('[data-figure="tokens"]').waitFor();
    await page.waitForTimeout(5500); // a round of every poll, redrawn by the script
    const state = await page.evaluate(() => ({
      flags: Object.keys(window).filter((k) => k.startsWith('__')),
      imgs: document.querySelectorAll('img').length,
      scripts: [...document.querySelectorAll('script')].map((s: any) => s.getAttribute('src')),
      handlers: [...document.querySelectorAll('*')].filter((e: any) => [...e.attributes].some((a: any) => /^on/i.test(a.name))).length,
      foreignHrefs: [...document.querySelectorAll('a')].map((a: any) => a.getAttribute('href')).filter((h: string) => !h.startsWith('/ui')),
      models: [...document.querySelectorAll('#count-model option')].map((o: any) => o.value),
    }));
    expect(state).toEqual({ flags: [], imgs: 0, scripts: ['/ui/app.js'], handlers: 0, foreignHrefs: [], models: MODELS });
    expect(problems).toEqual([]); // no CSP violation: nothing injected even tried to run

    const port = (evil.address() as { port: number }).port;
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`]) { // same-site other port; cross-site
      const seen: string[] = [];
      const ep = await ctx.newPage();
      ep.on('response', (r) => { if (r.url().startsWith(t.http)) seen.push(`${r.request().method()} ${new URL(r.url()).pathname} ${r.status()}`); });
      ep.on('console', (m) => seen.push(`console ${m.text()}`));
      evilHtml = `<form id=f method=post action="${t.http}/ui/logout"></form>
<iframe src="${t.http}/ui"></iframe>
<iframe sandbox="allow-forms allow-scripts" srcdoc="<form id=h method=post action='${t.http}/ui/logout'></form><script>document.getElementById('h').submit()</script>"></iframe>
<script>fetch('${t.http}/ui/api/count',{method:'POST',credentials:'include',headers:{'x-tokenwarden-ui':'1','content-type':'application/json'},body:'{}'}).then(r=>console.log('fetch status '+r.status),e=>console.log('fetch blocked'));</script>`;
      await ep.goto(`http://${host}/`);
      await ep.waitForTimeout(1500);
      await ep.evaluate(() => document.getElementById('f').submit());
      await ep.waitForTimeout(1500);
      expect(seen.filter((s) => s.startsWith('POST /ui/logout')), host).toEqual(['POST /ui/logout 403', 'POST /ui/logout 403']);
      expect(seen, host).toContain('console fetch blocked');
      expect(seen.some((s) => s.includes("frame-ancestors 'none'")), host).toBe(true);
      expect((await ctx.cookies()).map((c) => c.name)).toEqual(['tokenwarden_ui']);
      await ep.close();
    }
    await page.reload();
    expect(await page.locator('#live').count()).toBe(1); // still logged in
  }, 120_000);
});
