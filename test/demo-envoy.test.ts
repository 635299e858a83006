import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startEnvoyStandIn, type EnvoyStandIn } from '../demo/envoy-stand-in.js';
import { serviceDefinition } from '../src/envoy/protos.js';
import { fromStruct, toStruct } from '../src/envoy/struct.js';
import { ADMIN, startTestApp, type TestApp } from './helpers/app.js';
import { jsonCompletion, sseCompletion } from './helpers/vllm-responses.js';
import { eventually } from './helpers/eventually.js';

const CONFIG = `
defaults: { tokensPerMinute: 100000, tokensPerDay: 1000000 }
models: { llama-3.2-1b: {} }
users: { limited: { limits: { requestsPerMinute: 1 } } }
identity: { trustUserHeader: true }
reservation: { defaultCompletionTokens: 256 }
tokenization: { workers: 0 }
`;
const ENVOY_YAML = resolve('envoy/envoy.yaml');
const USAGE_LUA = resolve('envoy/usage.lua');
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const chat = (extra: object = {}) => ({ model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 500, ...extra });

/** The model server behind the stand-in: records what reaches it; each test sets how it answers. */
interface Seen { method: string; url: string; headers: http.IncomingHttpHeaders; body: string; aborted: boolean }
let handler: (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void;
const seen: Seen[] = [];
const upstream = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const record: Seen = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString(), aborted: false };
    seen.push(record);
    res.on('close', () => (record.aborted = !res.writableFinished));
    handler(req, res, record.body);
  });
});

let tw: TestApp;
const standIns: EnvoyStandIn[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'envoy-stand-in-'));

beforeAll(async () => {
  tw = await startTestApp({ configYaml: CONFIG, store: { kind: 'memory' } });
  upstream.listen(0, '127.0.0.1');
  await new Promise((r) => upstream.once('listening', r));
});
afterAll(async () => {
  upstream.closeAllConnections();
  upstream.close();
  await tw.close();
});
afterEach(async () => {
  await Promise.all(standIns.splice(0).map((s) => s.close()));
  seen.length = 0;
});

const upstreamAddress = () => `127.0.0.1:${(upstream.address() as AddressInfo).port}`;
async function freePort(): Promise<number> {
  const server = http.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/** The stand-in on envoy/envoy.yaml (or a variant of it), pointed at tokenwarden and the test's model server. */
async function envoy(options: { edit?: (yaml: string) => string; clusters?: Record<string, string>; luaScript?: string } = {}) {
  let envoyYaml = ENVOY_YAML;
  if (options.edit) {
    envoyYaml = join(tmp, `envoy-${standIns.length}-${Date.now()}.yaml`);
    writeFileSync(envoyYaml, options.edit(readFileSync(ENVOY_YAML, 'utf8')));
  }
  const standIn = await startEnvoyStandIn({
    envoyYaml,
    luaScript: options.luaScript ?? USAGE_LUA,
    listenPort: 0,
    clusterAddresses: {
      tokenwarden: `127.0.0.1:${tw.app.grpcPort}`,
      tokenwarden_http: `127.0.0.1:${tw.app.httpPort}`,
      vllm_llama_3_2_1b: upstreamAddress(),
      ...options.clusters,
    },
  });
  standIns.push(standIn);
  return { url: `http://127.0.0.1:${standIn.port}`, standIn };
}

const post = (url: string, user: string, body: unknown, init: RequestInit = {}) =>
  fetch(`${url}/v1/chat/completions`, { method: 'POST', ...init, headers: { 'x-user-id': user, 'content-type': 'application/json', ...init.headers }, body: JSON.stringify(body) });

async function usage(user: string) {
  const body = (await (await fetch(`${tw.http}/v1/usage/${user}?model=llama-3.2-1b`, { headers: ADMIN })).json()) as any;
  const model = body.models?.[0];
  const windows = Object.fromEntries((model?.windows ?? []).map((w: { window: string; used: number }) => [w.window, w.used]));
  return { tokens: (windows['tokensPerMinute'] ?? 0) as number, concurrent: (model?.concurrentRequests?.used ?? 0) as number };
}
async function metric(pattern: RegExp): Promise<number> {
  const text = await (await fetch(`${tw.http}/metrics`)).text();
  return text.split('\n').filter((line) => pattern.test(line)).reduce((sum, line) => sum + Number(line.split(' ').pop()), 0);
}
const checks = () => metric(/^tokenwarden_check_duration_seconds_count/);
const settled = (rule: string) => metric(new RegExp(`^tokenwarden_settlements_total\\{rule="${rule}"`));
async function waitFor(done: () => boolean, ms = 3000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return done();
}

describe('the Envoy stand-in (demo/envoy-stand-in.ts) in front of a real tokenwarden', () => {
  it('forwards an allowed request with Envoy’s headers and the Check’s response headers; usage.lua’s usage settles the reservation', async () => {
    const { url } = await envoy();
    let atAdmission: Awaited<ReturnType<typeof usage>> | undefined;
    handler = async (_req, res) => {
      atAdmission ??= await usage('ana'); // reserved by the Check; nothing logged yet
      res.writeHead(200, { 'content-type': 'application/json' }).end(jsonCompletion('a', 'Hello!', { prompt_tokens: 11, completion_tokens: 37 }));
    };
    const res = await post(url, 'ana', chat());
    expect(res.status).toBe(200);
    expect(JSON.parse(await res.text()).usage.completion_tokens).toBe(37);
    expect(res.headers.get('x-ratelimit-limit-tokens')).toBe('100000'); // ok_response.response_headers_to_add
    expect(seen).toHaveLength(1);
    expect(seen[0]!.headers['x-request-id']).toMatch(UUID_V4);
    expect(seen[0]!.headers).toMatchObject({ 'x-forwarded-proto': 'http', 'x-envoy-expected-rq-timeout-ms': '300000', 'x-user-id': 'ana' });
    expect(JSON.parse(seen[0]!.body)).toEqual(chat());
    // Reserved at admission (prompt + 500), then settled from vLLM's usage after the access-log flush.
    expect(atAdmission).toMatchObject({ concurrent: 1 });
    expect(atAdmission!.tokens).toBeGreaterThan(500);
    expect(await eventually(() => usage('ana'), (u) => u.tokens === 48)).toEqual({ tokens: 48, concurrent: 0 });
    // generate_request_id keeps a client's x-request-id (this HCM sets no use_remote_address).
    await (await post(url, 'ana', chat(), { headers: { 'x-request-id': 'client-chosen' } })).text();
    expect(seen[1]!.headers['x-request-id']).toBe('client-chosen');
  });

  it('answers a denial with tokenwarden’s 429 body and headers; the model server never sees it', async () => {
    const { url } = await envoy();
    handler = (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(jsonCompletion('b', 'Hi', { prompt_tokens: 5, completion_tokens: 1 }));
    expect((await post(url, 'limited', chat())).status).toBe(200);
    const denied = await post(url, 'limited', chat());
    expect(denied.status).toBe(429);
    expect(denied.headers.get('content-type')).toBe('application/json');
    expect(Number(denied.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(denied.headers.get('x-ratelimit-limit-requests')).toBe('1');
    expect(((await denied.json()) as any).error.code).toBe('rate_limit_exceeded');
    expect(seen).toHaveLength(1);
  });

  it('answers status_on_error (503) when tokenwarden is down, and forwards instead with failure_mode_allow', async () => {
    const down = `127.0.0.1:${await freePort()}`;
    const { url } = await envoy({ clusters: { tokenwarden: down } });
    handler = (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(jsonCompletion('c', 'Hi', { prompt_tokens: 5, completion_tokens: 1 }));
    const refused = await post(url, 'carl', chat());
    expect(refused.status).toBe(503);
    expect(await refused.text()).toBe('');
    expect(seen).toHaveLength(0);
    const open = await envoy({ clusters: { tokenwarden: down }, edit: (y) => y.replace('failure_mode_allow: false', 'failure_mode_allow: true') });
    expect((await post(open.url, 'carl', chat())).status).toBe(200);
    expect(seen).toHaveLength(1);
  });

  it('runs usage.lua on the SSE chunks while they stream, and its usage reaches tokenwarden', async () => {
    // A wrapper around the real usage.lua that also writes every chunk it is handed to a file, so the
    // model server can tell whether Lua saw a chunk before the rest of the response was even sent.
    const marker = join(tmp, 'chunks-seen-by-lua');
    writeFileSync(marker, '');
    const wrapper = join(tmp, 'usage-with-marker.lua');
    writeFileSync(wrapper, `dofile(${JSON.stringify(USAGE_LUA)})
local usage_on_response = envoy_on_response
function envoy_on_response(handle)
  usage_on_response(setmetatable({
    bodyChunks = function()
      local next_chunk = handle:bodyChunks()
      return function()
        local chunk = next_chunk()
        if chunk then local f = io.open(${JSON.stringify(marker)}, "ab"); f:write(chunk:getBytes(0, chunk:length())); f:close() end
        return chunk
      end
    end,
  }, { __index = function(_, name) return function(_, ...) return handle[name](handle, ...) end end }))
end
`);
    const { url } = await envoy({ luaScript: wrapper });
    const body = sseCompletion('d', ['Hel', 'lo', '!'], { prompt_tokens: 9, completion_tokens: 3 });
    const split = body.indexOf('"completion_tokens"'); // the usage object arrives in two pieces
    const parts = [body.slice(0, 40), body.slice(40, split), body.slice(split)];
    const luaSawEachPartInTime: boolean[] = [];
    let clientGotFirst = false;
    handler = async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let sent = '';
      for (const [i, part] of parts.entries()) {
        res.write(part);
        sent += part;
        luaSawEachPartInTime.push(await waitFor(() => readFileSync(marker, 'utf8') === sent));
        if (i === 0) await waitFor(() => clientGotFirst);
      }
      res.end();
    };
    const res = await post(url, 'dora', chat({ stream: true, stream_options: { include_usage: true } }));
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(Buffer.from(first.value!).toString()).toBe(parts[0]); // delivered before the model server went on
    clientGotFirst = true;
    let text = Buffer.from(first.value!).toString();
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += Buffer.from(r.value).toString();
    expect(text).toBe(body);
    expect(luaSawEachPartInTime).toEqual([true, true, true]);
    expect(await eventually(() => usage('dora'), (u) => u.tokens === 12)).toEqual({ tokens: 12, concurrent: 0 });
  });

  it('logs a client that goes away mid-stream with DC, aborts the upstream, and tokenwarden keeps the reservation', async () => {
    const { url } = await envoy();
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"choices":[{"index":0,"delta":{"content":"Once"}}]}\n\n'); // then never finishes
    };
    const clientGoneBefore = await settled('client_gone');
    const abort = new AbortController();
    const res = await post(url, 'eve', chat({ stream: true }), { signal: abort.signal });
    await res.body!.getReader().read();
    const reserved = (await usage('eve')).tokens;
    expect(reserved).toBeGreaterThan(500);
    abort.abort();
    expect(await waitFor(() => seen[0]?.aborted === true)).toBe(true);
    expect(await eventually(() => settled('client_gone'), (n) => n === clientGoneBefore + 1)).toBe(clientGoneBefore + 1);
    expect(await usage('eve')).toEqual({ tokens: reserved, concurrent: 0 });
  });

  it('answers 413 itself for a body over max_request_bytes, without a Check', async () => {
    const { url } = await envoy();
    const checksBefore = await checks();
    const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'x-user-id': 'fay' }, body: 'x'.repeat(1024 * 1024 + 1) });
    expect(res.status).toBe(413);
    expect(await res.text()).toBe('Payload Too Large');
    expect(await checks()).toBe(checksBefore);
    expect(seen).toHaveLength(0);
  });

  it('routes GET /v1/usage (normalized paths only) to tokenwarden’s HTTP port without ext_authz', async () => {
    const { url } = await envoy();
    handler = (_req, res) => res.writeHead(404).end('model server');
    const checksBefore = await checks();
    for (const path of ['/v1/usage/gus', '/v1//usage/gus', '/v1/x/../usage/gus', '/%76%31/usage/gus']) {
      const res = await fetch(`${url}${path}?model=llama-3.2-1b`, { headers: ADMIN });
      expect([path, res.status, ((await res.json()) as any).user]).toEqual([path, 200, 'gus']);
    }
    expect(await checks()).toBe(checksBefore);
    expect((await fetch(`${url}/v1/usage/%2F..%2Fmetrics`, { headers: ADMIN })).status).toBe(400); // escaped slashes: REJECT_REQUEST
    // Normalized to /metrics: the model route, behind ext_authz, never tokenwarden_http's /metrics.
    const dotted = await fetch(`${url}/v1/usage/../../metrics`, { headers: { ...ADMIN, 'x-user-id': 'gus' } });
    expect(await dotted.text()).not.toContain('# HELP');
    expect(await checks()).toBe(checksBefore + 1);
    expect(seen.every((s) => s.url === '/metrics')).toBe(true);
  });

  it('answers 504 (UT) on the route timeout and 503 (UF) when the model server is down; tokenwarden settles both', async () => {
    const { url } = await envoy({ edit: (y) => y.replace('timeout: 300s', 'timeout: 0.3s') });
    handler = () => {}; // never answers
    const [timeoutsBefore, notForwardedBefore] = [await settled('upstream_timeout'), await settled('not_forwarded')];
    const slow = await post(url, 'hal', chat());
    expect([slow.status, await slow.text()]).toEqual([504, 'upstream request timeout']);
    expect(await eventually(() => settled('upstream_timeout'), (n) => n > timeoutsBefore)).toBe(timeoutsBefore + 1);
    const down = await envoy({ clusters: { vllm_llama_3_2_1b: `127.0.0.1:${await freePort()}` } });
    const refused = await post(down.url, 'hal', chat());
    expect(refused.status).toBe(503);
    expect(await refused.text()).toMatch(/^upstream connect error or disconnect\/reset before headers\. reset reason: remote connection failure/);
    expect(await eventually(() => settled('not_forwarded'), (n) => n > notForwardedBefore)).toBe(notForwardedBefore + 1);
    expect(await eventually(() => usage('hal'), (u) => u.concurrent === 0)).toMatchObject({ concurrent: 0 });
  });
});

describe('the Envoy stand-in against a scripted ext_authz and access-log server', () => {
  it('sends the CheckRequest Envoy sends, applies ok_response headers, and streams access-log entries as Envoy does', async () => {
    const checkRequests: any[] = [];
    const messages: any[] = [];
    const server = new grpc.Server();
    server.addService(serviceDefinition('envoy.service.auth.v3.Authorization'), {
      Check(call: grpc.ServerUnaryCall<any, object>, callback: grpc.sendUnaryData<object>) {
        checkRequests.push(call.request);
        callback(null, {
          status: { code: 0 },
          ok_response: {
            headers: [{ header: { key: 'x-tokenwarden-user', value: 'ivy' } }],
            headers_to_remove: ['authorization'],
            response_headers_to_add: [{ header: { key: 'x-quota', value: 'fine' } }],
          },
          dynamic_metadata: toStruct({ reservation_id: 'r-1', user: 'ivy', model: 'llama-3.2-1b' }),
        });
      },
    });
    server.addService(serviceDefinition('envoy.service.accesslog.v3.AccessLogService'), {
      StreamAccessLogs(call: grpc.ServerReadableStream<any, object>, callback: grpc.sendUnaryData<object>) {
        call.on('data', (m) => messages.push(m));
        call.on('end', () => callback(null, {}));
      },
    });
    const port = await new Promise<number>((ok, fail) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? fail(e) : ok(p))));
    try {
      const { url } = await envoy({ clusters: { tokenwarden: `127.0.0.1:${port}` } });
      handler = (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(jsonCompletion('j', 'Hi', { prompt_tokens: 7, completion_tokens: 2 }));
      const body = JSON.stringify(chat());
      const res = await fetch(`${url}/v1/chat/completions?x=1`, { method: 'POST', headers: { authorization: 'Bearer secret', 'x-request-id': 'rid-1' }, body });
      expect([res.status, res.headers.get('x-quota')]).toEqual([200, 'fine']);
      await res.text();
      expect(seen[0]!.headers['x-tokenwarden-user']).toBe('ivy');
      expect(seen[0]!.headers['authorization']).toBeUndefined();
      expect(seen[0]!.url).toBe('/v1/chat/completions?x=1');

      const http0 = checkRequests[0].attributes.request.http;
      expect(http0).toMatchObject({ method: 'POST', path: '/v1/chat/completions?x=1', host: `127.0.0.1:${url.split(':').pop()}` });
      expect(Buffer.from(http0.raw_body).toString()).toBe(body); // pack_as_bytes
      expect(http0.body ?? '').toBe(''); // not also as a string
      expect(http0.headers).toMatchObject({ ':method': 'POST', ':path': '/v1/chat/completions?x=1', 'x-request-id': 'rid-1', authorization: 'Bearer secret', 'x-forwarded-proto': 'http' });

      await (await fetch(`${url}/v1/chat/completions`, { method: 'POST', body })).text();
      handler = (_req, res) => res.writeHead(200, { 'content-type': 'text/event-stream' }).write('data: {"choices":[]}\n\n');
      const abort = new AbortController();
      await (await fetch(`${url}/v1/chat/completions`, { method: 'POST', body, signal: abort.signal })).body!.getReader().read();
      abort.abort();
      await waitFor(() => messages.reduce((n, m) => n + m.http_logs.log_entry.length, 0) === 3, 3000);
      expect(messages[0].identifier.log_name).toBe('tokenwarden');
      expect(messages.slice(1).every((m) => m.identifier === null || m.identifier === undefined)).toBe(true);
      const entry = messages[0].http_logs.log_entry[0];
      expect(entry.request.request_id).toBe('rid-1');
      expect(entry.response.response_code.value).toBe(200);
      expect(entry.response.response_code_details).toBe('via_upstream');
      expect(entry.common_properties.upstream_remote_address.socket_address.port_value).toBe((upstream.address() as AddressInfo).port);
      expect(entry.common_properties.upstream_cluster).toBe('vllm_llama_3_2_1b');
      expect(entry.common_properties.time_to_first_upstream_tx_byte).toBeTruthy();
      expect(entry.common_properties.response_flags ?? null).toBeNull();
      const metadata = entry.common_properties.metadata.filter_metadata;
      expect(fromStruct(metadata['envoy.filters.http.ext_authz'])).toEqual({ reservation_id: 'r-1', user: 'ivy', model: 'llama-3.2-1b' });
      expect(fromStruct(metadata['tokenwarden.usage'])).toEqual({ prompt_tokens: 7, completion_tokens: 2 });
      // The client that went away mid-stream: the code already sent, DC, and no usage (the script never finished).
      const gone = messages.flatMap((m) => m.http_logs.log_entry)[2];
      expect(gone.response).toMatchObject({ response_code: { value: 200 }, response_code_details: 'downstream_remote_disconnect' });
      expect(gone.common_properties.response_flags).toMatchObject({ downstream_connection_termination: true });
      expect(Object.keys(gone.common_properties.metadata.filter_metadata)).toEqual(['envoy.filters.http.ext_authz']);
    } finally {
      await Promise.all(standIns.splice(0).map((s) => s.close()));
      server.forceShutdown();
    }
  });
});
