/**
 * envoy stand-in — NOT Envoy. A small HTTP/1.1 proxy for the one-machine demo (`make demo`) and its
 * tests, where real Envoy cannot run. It lives in demo/, is never shipped, and must not front real traffic.
 *
 * It reads envoy/envoy.yaml and follows Envoy's documented behaviour for exactly the features that
 * file uses (anything else in it fails at startup): HCM request ids, path normalization and the route
 * table; ext_authz over gRPC with the request body; the Lua filter, running envoy/usage.lua under real
 * LuaJIT on the response chunks as they stream (demo/envoy-lua-host.lua); the router (HTTP/1.1 to the
 * cluster's first endpoint, route timeouts, connect failures); and the gRPC access log to tokenwarden.
 *
 * As a script: ENVOY_YAML (default envoy/envoy.yaml), ENVOY_LUA (default: usage.lua next to the yaml),
 * ENVOY_CLUSTERS ("tokenwarden=127.0.0.1:9001,tokenwarden_http=...,vllm_llama_3_2_1b=..."), ENVOY_PORT.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { parse as parseYaml } from 'yaml';
import { buildCheckRequest } from '../src/envoy/check-client.js';
import { envoyServices, PROTO_LOADER_OPTIONS } from '../src/envoy/protos.js';
import { toStruct, type ProtoStruct, type Scalar } from '../src/envoy/struct.js';

export interface EnvoyStandInOptions {
  envoyYaml: string;
  /** Default: usage.lua next to the yaml (which names /etc/envoy/usage.lua, its path in a container). */
  luaScript?: string;
  /** Cluster name → "host:port", overriding the yaml's socket addresses. */
  clusterAddresses: Record<string, string>;
  listenPort?: number;
  /** The address to listen on (the yaml's 0.0.0.0 is for a container): 127.0.0.1 by default. */
  host?: string;
}
export interface EnvoyStandIn {
  readonly port: number;
  close(): Promise<void>;
}

/** envoy.yaml and proto-loader objects, read field by field. */
type Y = any;
type Metadata = Record<string, Record<string, Scalar>>;
type Headers = Map<string, string[]>;
interface Route { matches(path: string, method: string): boolean; cluster: string; timeoutMs: number; authz: boolean; lua: boolean }
interface Cluster { name: string; host: string; port: number; connectTimeoutMs: number }
interface HeaderOption { header?: { key?: string; value?: string }; append?: { value?: boolean } }

const say = (message: string) => console.error(`envoy stand-in: ${message}`);
const AUTHZ = 'envoy.filters.http.ext_authz';
const LUA = 'envoy.filters.http.lua';
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade'];
/** What the HCM strips from an external request (conn_manager_utility.cc, cleanInternalHeaders). */
const INTERNAL_HEADERS = ['internal', 'retry-on', 'retry-grpc-on', 'max-retries', 'upstream-alt-stat-name', 'upstream-rq-timeout-ms', 'upstream-rq-per-try-timeout-ms',
  'upstream-rq-timeout-alt-response', 'expected-rq-timeout-ms', 'force-trace', 'ip-tags', 'original-url', 'hedge-on-per-try-timeout', 'retriable-status-codes',
  'retriable-header-names'].map((h) => `x-envoy-${h}`);

function unsupported(what: string, value: unknown): never {
  throw new Error(`envoy stand-in: ${what} is not implemented: ${JSON.stringify(value)}`);
}
function durationMs(value: Y, fallback: number): number {
  if (value === undefined) return fallback;
  const match = /^(\d+(?:\.\d+)?)s$/.exec(String(value));
  return match ? Math.round(Number(match[1]) * 1000) : unsupported('duration', value);
}

// ------------------------------------------------------------------ configuration from envoy.yaml
function parseRoute(r: Y): Route {
  const { prefix, path, path_separated_prefix: separated, headers = [], ...rest } = r.match;
  if (Object.keys(rest).length) unsupported('route match', rest);
  for (const h of headers) if (h.name !== ':method' || Object.keys(h.string_match ?? {}).join() !== 'exact') unsupported('header matcher', h);
  const pathMatches = (p: string) =>
    prefix !== undefined ? p.startsWith(prefix) : path !== undefined ? p === path : separated !== undefined ? p === separated || p.startsWith(`${separated}/`) : unsupported('route', r.match);
  const enabled = (filter: string) => r.typed_per_filter_config?.[filter]?.disabled !== true;
  return {
    matches: (p, method) => pathMatches(p) && headers.every((h: Y) => h.string_match.exact === method),
    cluster: r.route.cluster,
    timeoutMs: durationMs(r.route.timeout, 15_000), // RouteAction.timeout: "If not specified, the default is 15s"
    authz: enabled(AUTHZ),
    lua: enabled(LUA),
  };
}

function loadConfig(options: EnvoyStandInOptions) {
  const doc: Y = parseYaml(readFileSync(options.envoyYaml, 'utf8'));
  const listener = doc.static_resources.listeners[0];
  const hcm = listener.filter_chains[0].filters.find((f: Y) => f.name === 'envoy.filters.network.http_connection_manager').typed_config;
  const filters: Y[] = hcm.http_filters;
  for (const f of filters) if (![AUTHZ, LUA, 'envoy.filters.http.router'].includes(f.name)) unsupported('http filter', f.name);
  const authzFilter = filters.find((f) => f.name === AUTHZ)?.typed_config;
  const body = authzFilter?.with_request_body ?? {};
  if (body.allow_partial_message) unsupported('allow_partial_message', true);
  const escapedSlashes = hcm.path_with_escaped_slashes_action ?? 'KEEP_UNCHANGED';
  if (!['KEEP_UNCHANGED', 'REJECT_REQUEST'].includes(escapedSlashes)) unsupported('path_with_escaped_slashes_action', escapedSlashes);
  const als = hcm.access_log?.find((a: Y) => a.name === 'envoy.access_loggers.http_grpc')?.typed_config.common_config ?? unsupported('access_log', hcm.access_log);
  // Envoy refuses a config whose ext_authz or gRPC access log does not say transport_api_version: V3.
  for (const [what, c] of [['ext_authz', authzFilter], ['access log', als]]) if (c && c.transport_api_version !== 'V3') unsupported(`${what} transport_api_version`, c.transport_api_version);
  const statusCodes: Y = protoLoader.loadSync('envoy/type/v3/http_status.proto', PROTO_LOADER_OPTIONS)['envoy.type.v3.StatusCode'];
  const statusByName = new Map<string, number>(statusCodes.type.value.map((v: Y) => [v.name, v.number]));
  const clusters = new Map<string, Cluster>();
  for (const c of doc.static_resources.clusters) {
    const socket = c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
    const [host = '', port] = (options.clusterAddresses[c.name] ?? `${socket.address}:${socket.port_value}`).split(/:(?=\d+$)/);
    clusters.set(c.name, { name: c.name, host, port: Number(port), connectTimeoutMs: durationMs(c.connect_timeout, 5000) });
  }
  return {
    port: options.listenPort ?? Number(listener.address.socket_address.port_value),
    routes: (hcm.route_config.virtual_hosts[0].routes as Y[]).map(parseRoute),
    generateRequestId: hcm.generate_request_id !== false,
    normalizePath: hcm.normalize_path === true,
    mergeSlashes: hcm.merge_slashes === true,
    rejectEscapedSlashes: escapedSlashes === 'REJECT_REQUEST',
    clusters,
    authz: authzFilter && {
      cluster: authzFilter.grpc_service.envoy_grpc.cluster_name as string,
      timeoutMs: durationMs(authzFilter.grpc_service.timeout, 200), // ext_authz.proto: "default timeout: 200ms"
      maxRequestBytes: Number(body.max_request_bytes ?? 0),
      packAsBytes: body.pack_as_bytes === true,
      failureModeAllow: authzFilter.failure_mode_allow === true,
      statusOnError: statusByName.get(authzFilter.status_on_error?.code ?? 'Forbidden') ?? 403, // default 403
      statusByName,
    },
    lua: filters.some((f) => f.name === LUA) ? (options.luaScript ?? join(dirname(options.envoyYaml), 'usage.lua')) : undefined,
    als: { cluster: als.grpc_service.envoy_grpc.cluster_name as string, logName: als.log_name as string,
      flushMs: durationMs(als.buffer_flush_interval, 1000), bufferBytes: Number(als.buffer_size_bytes ?? 16384) },
  };
}

// ------------------------------------------------------------------ LuaJIT: one process, like one Envoy worker's Lua state
interface LuaResponse { chunk(bytes: Buffer): void; end(): void; abort(): void; readonly metadata: Promise<Metadata> }

class LuaHost {
  private readonly child: ChildProcessByStdio<Writable, Readable, null>;
  private readonly open = new Map<string, { metadata: Metadata; done(): void }>();
  private nextId = 1;
  readonly ready: Promise<void>;

  constructor(script: string) {
    const host = fileURLToPath(new URL('./envoy-lua-host.lua', import.meta.url));
    // Its own process group: Ctrl-C reaches the demo, which closes luajit's stdin, not luajit itself.
    this.child = spawn('luajit', [host, script], { stdio: ['pipe', 'pipe', 'inherit'], detached: true });
    // luajit gone mid-stream (killed, crashed): writes fail with EPIPE; the responses then carry no usage, as when Envoy's Lua errs.
    this.child.stdin.on('error', () => {});
    this.child.stdout.setEncoding('latin1'); // bytes as they come; %XX-escapes and UTF-8 are decoded per field
    this.ready = new Promise((resolve, reject) => {
      this.child.once('error', (err) => reject(new Error(`envoy stand-in: cannot run luajit (make test installs it): ${err.message}`)));
      this.child.once('exit', (code) => reject(new Error(`envoy stand-in: luajit exited (${code}) loading ${script}`)));
      createInterface({ input: this.child.stdout }).on('line', (line) => (line === 'ready' ? resolve() : this.onLine(line)));
    });
    this.child.on('exit', () => [...this.open.values()].forEach((r) => r.done()));
  }

  private onLine(line: string): void {
    const unescape = (f: string) => Buffer.from(f.replace(/%([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8');
    const [kind, id = '', namespace = '', key = '', type, text = ''] = line.split(' ').map(unescape);
    const response = this.open.get(id);
    if (kind === 'done') response?.done();
    if (kind === 'set' && response) (response.metadata[namespace] ??= {})[key] = type === 'number' ? Number(text) : type === 'boolean' ? text === 'true' : text;
  }

  private write(frame: string | Buffer): void {
    if (this.child.stdin.writable) this.child.stdin.write(frame);
  }

  /** envoy_on_response for a response whose headers just arrived; metadata resolves when the script is done (or dropped). */
  response(): LuaResponse {
    const id = String(this.nextId++);
    const entry = { metadata: {} as Metadata, done: () => {} };
    const metadata = new Promise<Metadata>((resolve) => (entry.done = () => void (this.open.delete(id), resolve(entry.metadata))));
    this.open.set(id, entry);
    if (this.child.exitCode !== null) entry.done(); // luajit is gone: the script sets nothing
    this.write(`open ${id}\n`);
    return {
      chunk: (bytes) => bytes.length > 0 && this.write(Buffer.concat([Buffer.from(`chunk ${id} ${bytes.length}\n`), bytes])),
      end: () => this.write(`end ${id}\n`),
      abort: () => this.write(`abort ${id}\n`),
      metadata,
    };
  }

  async close(): Promise<void> {
    this.child.stdin.end();
    if (this.child.exitCode === null) await once(this.child, 'exit');
  }
}

// ------------------------------------------------------------------ the gRPC access logger (one stream, like one worker)
class GrpcAccessLogger {
  private batch: object[] = [];
  private bytes = 0;
  private stream: grpc.ClientWritableStream<object> | undefined;
  private streamClosed: Promise<void> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly client: Y, private readonly logName: string, flushMs: number, private readonly bufferBytes: number) {
    this.timer = setInterval(() => this.flush(), flushMs); // buffer_flush_interval
  }

  log(entry: object): void {
    this.batch.push(entry);
    this.bytes += JSON.stringify(entry).length; // approximates the encoded size Envoy compares with buffer_size_bytes
    if (this.bytes >= this.bufferBytes) this.flush();
  }

  /** Opens the stream when there is none (the identifier goes on its first message only); no acks: a broken stream loses its entries. */
  private flush(): void {
    if (this.batch.length === 0) return;
    const first = this.stream === undefined;
    if (first) {
      this.streamClosed = new Promise((resolve) => {
        const stream: grpc.ClientWritableStream<object> = this.client.StreamAccessLogs((err: grpc.ServiceError | null) => {
          if (err) say(`access log stream closed: ${err.message}`);
          if (this.stream === stream) this.stream = undefined;
          resolve();
        });
        this.stream = stream;
      });
    }
    const identifier = { node: { id: 'envoy-stand-in', cluster: 'envoy-stand-in' }, log_name: this.logName };
    this.stream!.write({ ...(first ? { identifier } : {}), http_logs: { log_entry: this.batch } });
    this.batch = [];
    this.bytes = 0;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.flush();
    this.stream?.end();
    await Promise.race([this.streamClosed, new Promise((r) => setTimeout(r, 2000))]);
    this.client.close();
  }
}

// ------------------------------------------------------------------ helpers
const toObject = (headers: Headers) => Object.fromEntries([...headers].map(([k, v]) => [k, v.length === 1 ? v[0]! : v]));
const address = (host: string | undefined, port: number | undefined) => (host === undefined ? undefined : { socket_address: { address: host, port_value: port } });
const since = (from: bigint, to: bigint | undefined) => (to === undefined ? undefined : { seconds: String((to - from) / 10n ** 9n), nanos: Number((to - from) % 10n ** 9n) });

/** HeaderValueOption as ext_authz applies it: append "defaults to false" (set, replacing); append: true adds a value. */
function applyOptions(headers: Headers, options: HeaderOption[] | undefined): void {
  for (const { header, append } of options ?? []) {
    if (!header?.key) continue;
    const key = header.key.toLowerCase();
    headers.set(key, append?.value === true ? [...(headers.get(key) ?? []), header.value ?? ''] : [header.value ?? '']);
  }
}
function headerMap(raw: string[], skip: string[] = []): Headers {
  const headers: Headers = new Map();
  for (let i = 0; i < raw.length; i += 2) {
    const key = raw[i]!.toLowerCase();
    if (!skip.includes(key)) headers.set(key, [...(headers.get(key) ?? []), raw[i + 1]!]);
  }
  return headers;
}
/** normalize_path: RFC 3986 normalization (unreserved %XX decoded, dot segments removed; no case normalization). */
function normalize(path: string): string {
  const decoded = path.replace(/%([0-9A-Fa-f]{2})/g, (m, hex: string) => (/[A-Za-z0-9\-._~]/.test(String.fromCharCode(parseInt(hex, 16))) ? String.fromCharCode(parseInt(hex, 16)) : m.toUpperCase()));
  const out: string[] = [];
  decoded.split('/').slice(1).forEach((segment, i, all) => {
    if (segment === '..') out.pop();
    if (segment !== '.' && segment !== '..') out.push(segment);
    else if (i === all.length - 1) out.push('');
  });
  return `/${out.join('/')}`;
}

/** What Envoy's StreamInfo knows of one request when it is logged. */
interface Exchange {
  req: http.IncomingMessage; startMs: number; t0: bigint; times: Record<string, bigint>; path: string; requestId: string; authority: string;
  code?: number; details?: string; flags: Record<string, unknown>; upstream?: Cluster; authzMetadata?: ProtoStruct; requestBytes: number; responseBytes: number;
}
function accessLogEntry(x: Exchange, lua: Metadata[]): object {
  const filterMetadata: Record<string, ProtoStruct> = {};
  if (Object.keys(x.authzMetadata?.fields ?? {}).length) filterMetadata[AUTHZ] = x.authzMetadata!;
  for (const set of lua) for (const [namespace, values] of Object.entries(set)) filterMetadata[namespace] = toStruct(values);
  const timing = ['last_rx_byte', 'first_upstream_tx_byte', 'last_upstream_tx_byte', 'first_upstream_rx_byte', 'last_upstream_rx_byte', 'first_downstream_tx_byte', 'last_downstream_tx_byte'];
  return {
    common_properties: {
      downstream_remote_address: address(x.req.socket.remoteAddress, x.req.socket.remotePort),
      downstream_local_address: address(x.req.socket.localAddress, x.req.socket.localPort),
      start_time: { seconds: String(Math.floor(x.startMs / 1000)), nanos: (x.startMs % 1000) * 1e6 },
      ...Object.fromEntries(timing.map((name) => [`time_to_${name}`, since(x.t0, x.times[name])])),
      upstream_remote_address: x.upstream && address(x.upstream.host, x.upstream.port),
      upstream_cluster: x.upstream?.name,
      response_flags: Object.keys(x.flags).length ? x.flags : undefined,
      metadata: Object.keys(filterMetadata).length ? { filter_metadata: filterMetadata } : undefined,
      duration: since(x.t0, process.hrtime.bigint()),
      access_log_type: 'DownstreamEnd',
    },
    protocol_version: 'HTTP11',
    request: { request_method: x.req.method, scheme: 'http', authority: x.authority, path: x.path, user_agent: x.req.headers['user-agent'], request_id: x.requestId, request_body_bytes: String(x.requestBytes) },
    response: { response_code: x.code === undefined ? undefined : { value: x.code }, response_code_details: x.details, response_body_bytes: String(x.responseBytes) },
  };
}

// ------------------------------------------------------------------ the proxy
export async function startEnvoyStandIn(options: EnvoyStandInOptions): Promise<EnvoyStandIn> {
  const config = loadConfig(options);
  const lua = config.lua === undefined ? undefined : new LuaHost(config.lua);
  await lua?.ready;
  const cluster = (name: string) => config.clusters.get(name) ?? unsupported('cluster', name);
  const grpcClient = (service: Y, name: string) => new service(`${cluster(name).host}:${cluster(name).port}`, grpc.credentials.createInsecure());
  const services = (envoyServices() as Y).envoy.service;
  const authzClient = config.authz && grpcClient(services.auth.v3.Authorization, config.authz.cluster);
  const accessLog = new GrpcAccessLogger(grpcClient(services.accesslog.v3.AccessLogService, config.als.cluster), config.als.logName, config.als.flushMs, config.als.bufferBytes);
  const agent = new http.Agent({ keepAlive: true });
  const pendingLogs = new Set<Promise<void>>();
  const now = () => process.hrtime.bigint();

  const server = http.createServer((req, res) => {
    try {
      handle(req, res);
    } catch (err) {
      // Envoy answers what it cannot parse with 400; nothing a client sends may stop the demo.
      res.writeHead(400, { 'content-type': 'text/plain' }).end('Bad Request');
      process.stderr.write(`envoy stand-in: request refused: ${(err as Error).message}\n`);
    }
  });
  const handle = (req: http.IncomingMessage, res: http.ServerResponse) => {
    // HCM: headers as Envoy holds them (HTTP/1.1: lower-case names, Host is :authority), external-request cleanup.
    const headers = headerMap(req.rawHeaders, [...HOP_BY_HOP, ...INTERNAL_HEADERS]);
    headers.set('x-forwarded-proto', headers.get('x-forwarded-proto') ?? ['http']);
    // generate_request_id: a client's x-request-id is replaced only for edge requests (use_remote_address, unset here).
    if (config.generateRequestId && !headers.has('x-request-id')) headers.set('x-request-id', [randomUUID()]);
    const url = req.url!.startsWith('/') ? req.url! : ((u) => u.pathname + u.search)(new URL(req.url!)); // absolute-form request line
    const [rawPath = '/', query] = url.split(/\?(.*)/s);
    const x: Exchange = { req, startMs: Date.now(), t0: now(), times: {}, path: url, requestId: headers.get('x-request-id')?.[0] ?? '', authority: headers.get('host')?.[0] ?? '', flags: {}, requestBytes: 0, responseBytes: 0 };
    const luaMetadata: Promise<Metadata>[] = [];
    let responseHeadersToAdd: HeaderOption[] = [];
    let resetByUs = false, closed = false, cancelCheck = () => {}, abortUpstream = () => {}, abortLua = () => {};
    req.on('data', (chunk: Buffer) => (x.requestBytes += chunk.length));
    req.on('end', () => (x.times['last_rx_byte'] = now()));
    req.on('error', () => {}); // a client going away is handled on res 'close'
    res.on('error', () => {});

    /** sendLocalReply: Envoy's own answer, text/plain, with the filter's headers on top. */
    const localReply = (status: number, body: string, details: string, extra: HeaderOption[] = []) => {
      if (closed) return;
      const out: Headers = new Map(body ? [['content-type', ['text/plain']]] : []);
      applyOptions(out, [...extra, ...responseHeadersToAdd]);
      out.set('content-length', [String(Buffer.byteLength(body))]);
      Object.assign(x, { code: status, details });
      res.writeHead(status, toObject(out));
      x.times['first_downstream_tx_byte'] = now();
      x.responseBytes += Buffer.byteLength(body);
      res.end(body, () => (x.times['last_downstream_tx_byte'] = now()));
    };

    res.on('close', () => {
      closed = true;
      if (!res.writableFinished && !resetByUs) {
        // The client went away: DC, details downstream_remote_disconnect; the code stays what was sent (none: absent).
        Object.assign(x.flags, { downstream_connection_termination: true });
        x.details = 'downstream_remote_disconnect';
        cancelCheck(); // as Envoy cancels the ext_authz call
        abortUpstream();
        abortLua(); // the script's coroutine is dropped mid-loop
      }
      const logged = Promise.all(luaMetadata).then((sets) => accessLog.log(accessLogEntry(x, sets)));
      pendingLogs.add(logged);
      void logged.finally(() => pendingLogs.delete(logged));
    });

    // Path handling in the HCM's order: escaped slashes, normalize_path, merge_slashes; routes see the path without the query.
    if (config.rejectEscapedSlashes && /%2f|%5c/i.test(rawPath)) return localReply(400, '', 'path_normalization_failed');
    let path = config.normalizePath ? normalize(rawPath) : rawPath;
    if (config.mergeSlashes) path = path.replace(/\/{2,}/g, '/');
    x.path = query === undefined ? path : `${path}?${query}`;
    const route = config.routes.find((r) => r.matches(path, req.method!));
    if (!route) {
      Object.assign(x.flags, { no_route_found: true }); // NR
      return localReply(404, '', 'route_not_found');
    }

    const forward = (body: Buffer | undefined) => {
      const target = (x.upstream = cluster(route.cluster));
      const out = new Map(headers);
      if (route.timeoutMs > 0) out.set('x-envoy-expected-rq-timeout-ms', [String(route.timeoutMs)]);
      const upstreamReq = http.request({ host: target.host, port: target.port, method: req.method, path: x.path, headers: toObject(out), agent });
      let connected = false, connectTimedOut = false, responseStarted = false, routeTimer: NodeJS.Timeout | undefined;
      const connectTimer = setTimeout(() => ((connectTimedOut = true), upstreamReq.destroy()), target.connectTimeoutMs); // cluster connect_timeout
      abortUpstream = () => (clearTimeout(connectTimer), clearTimeout(routeTimer), upstreamReq.destroy());
      const resetDownstream = () => ((resetByUs = true), abortLua(), abortUpstream(), res.destroy());
      // RouteAction.timeout: from the end of the downstream request until the upstream response is completely processed.
      const startRouteTimer = () => {
        if (route.timeoutMs <= 0) return;
        routeTimer = setTimeout(() => {
          Object.assign(x.flags, { upstream_request_timeout: true }); // UT
          x.details = 'upstream_response_timeout';
          if (responseStarted) return resetDownstream(); // headers already went out: Envoy resets the stream
          abortUpstream();
          localReply(504, 'upstream request timeout', 'upstream_response_timeout');
        }, route.timeoutMs);
      };
      upstreamReq.on('socket', (socket) => {
        const onConnect = () => ((connected = true), clearTimeout(connectTimer), (x.times['first_upstream_tx_byte'] = now()));
        if (socket.connecting) socket.once('connect', onConnect);
        else onConnect();
      });
      upstreamReq.on('finish', () => (x.times['last_upstream_tx_byte'] = now()));
      upstreamReq.on('error', (err: NodeJS.ErrnoException) => {
        if (responseStarted || resetByUs || closed || res.headersSent) return;
        clearTimeout(connectTimer);
        clearTimeout(routeTimer);
        Object.assign(x.flags, { [connected ? 'upstream_connection_termination' : 'upstream_connection_failure']: true }); // UC / UF
        const reason = connected ? 'connection_termination' : connectTimedOut ? 'connection_timeout' : 'remote_connection_failure';
        const transport = connected || connectTimedOut ? '' : `delayed connect error: ${err.code === 'ECONNREFUSED' ? 'Connection refused' : (err.code ?? err.message)}`;
        const body = `upstream connect error or disconnect/reset before headers. reset reason: ${reason.replace(/_/g, ' ')}`;
        localReply(503, transport ? `${body}, transport failure reason: ${transport}` : body,
          `upstream_reset_before_response_started{${reason}${transport ? `,${transport.replace(/ /g, '_')}` : ''}}`);
      });
      upstreamReq.on('response', (upstreamRes) => {
        responseStarted = true;
        x.times['first_upstream_rx_byte'] = now();
        upstreamRes.on('error', () => {}); // a reset is handled on 'close'
        const out = headerMap(upstreamRes.rawHeaders, HOP_BY_HOP);
        out.set('x-envoy-upstream-service-time', [String((now() - (x.times['last_upstream_tx_byte'] ?? x.t0)) / 1_000_000n)]);
        applyOptions(out, responseHeadersToAdd); // ext_authz's encodeHeaders
        Object.assign(x, { code: upstreamRes.statusCode, details: 'via_upstream' });
        res.writeHead(upstreamRes.statusCode!, toObject(out));
        res.flushHeaders();
        x.times['first_downstream_tx_byte'] = now();
        const script = route.lua ? lua?.response() : undefined;
        if (script) {
          luaMetadata.push(script.metadata);
          abortLua = () => script.abort();
        }
        upstreamRes.on('data', (chunk: Buffer) => {
          script?.chunk(chunk); // bodyChunks(): the script sees each chunk as it passes; nothing is held back
          x.responseBytes += chunk.length;
          if (!res.write(chunk)) upstreamRes.pause();
        });
        res.on('drain', () => upstreamRes.resume());
        upstreamRes.on('end', () => {
          clearTimeout(routeTimer);
          x.times['last_upstream_rx_byte'] = now();
          script?.end();
          abortLua = () => {};
          res.end(() => (x.times['last_downstream_tx_byte'] = now()));
        });
        upstreamRes.on('close', () => {
          if (upstreamRes.complete || resetByUs || closed) return;
          Object.assign(x.flags, { upstream_connection_termination: true }); // UC: the upstream went away mid-response
          x.details = 'upstream_reset_after_response_started{connection_termination}';
          resetDownstream();
        });
      });
      if (body) upstreamReq.end(body);
      else req.pipe(upstreamReq);
      if (body || req.readableEnded) startRouteTimer();
      else req.once('end', startRouteTimer);
    };

    const authz = route.authz ? config.authz : undefined;
    if (!authz) return forward(undefined); // ext_authz disabled on this route: the body streams through
    // with_request_body: buffer the body for the Check; past max_request_bytes (no partial messages) Envoy answers 413 itself.
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      if ((size += chunk.length) <= authz.maxRequestBytes || authz.maxRequestBytes === 0) return void chunks.push(chunk);
      if (res.headersSent) return;
      res.shouldKeepAlive = false;
      localReply(413, 'Payload Too Large', 'request_payload_too_large');
    });
    req.on('end', () => {
      if (res.headersSent || closed) return;
      const body = Buffer.concat(chunks);
      const { checkRequest } = buildCheckRequest({ method: req.method!, path: x.path, body, packAsBytes: authz.packAsBytes, requestId: x.requestId });
      const attributes = (checkRequest as Y).attributes;
      // The headers Envoy holds, pseudo-headers included, duplicates joined with ",", nothing invented.
      attributes.request.http.headers = { ':authority': x.authority, ':path': x.path, ':method': req.method, ':scheme': 'http',
        ...Object.fromEntries([...headers].filter(([k]) => k !== 'host').map(([k, v]) => [k, v.join(',')])) };
      attributes.request.http.host = x.authority;
      attributes.source = { address: address(req.socket.remoteAddress, req.socket.remotePort) };
      attributes.destination = { address: address(req.socket.localAddress, req.socket.localPort) };
      const call = authzClient.Check(checkRequest, { deadline: Date.now() + authz.timeoutMs }, (err: grpc.ServiceError | null, answer: Y) => {
        cancelCheck = () => {};
        if (closed) return;
        if (err) {
          if (authz.failureModeAllow) return forward(body); // failure_mode_allow: RPC failures (and timeouts) let the request through
          Object.assign(x.flags, { unauthorized_details: { reason: 'EXTERNAL_SERVICE' } }); // UAEX
          return localReply(authz.statusOnError, '', 'ext_authz_error');
        }
        x.authzMetadata = answer.dynamic_metadata; // emitted for OK and denied answers alike
        if ((answer.status?.code ?? 0) === 0) {
          const ok = answer.ok_response ?? {};
          applyOptions(headers, ok.headers);
          for (const name of ok.headers_to_remove ?? []) if (!name.startsWith(':') && name.toLowerCase() !== 'host') headers.delete(name.toLowerCase());
          responseHeadersToAdd = ok.response_headers_to_add ?? [];
          return forward(body);
        }
        const denied = answer.denied_response ?? {};
        const status = typeof denied.status?.code === 'number' ? denied.status.code : authz.statusByName.get(denied.status?.code);
        Object.assign(x.flags, { unauthorized_details: { reason: 'EXTERNAL_SERVICE' } });
        localReply(status || 403, denied.body ?? '', 'ext_authz_denied', denied.headers); // no status: 403
      });
      cancelCheck = () => call.cancel();
    });
  };

  server.requestTimeout = 0;
  server.listen(config.port, options.host ?? '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      server.close();
      server.closeAllConnections();
      await new Promise(setImmediate); // let the closed exchanges queue their entries
      await Promise.all([...pendingLogs]);
      await accessLog.close();
      authzClient?.close();
      agent.destroy();
      await lua?.close();
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const env = process.env;
  const standIn = await startEnvoyStandIn({
    envoyYaml: env['ENVOY_YAML'] ?? 'envoy/envoy.yaml',
    ...(env['ENVOY_LUA'] ? { luaScript: env['ENVOY_LUA'] } : {}),
    clusterAddresses: Object.fromEntries((env['ENVOY_CLUSTERS'] ?? '').split(',').filter(Boolean).map((pair) => pair.split('=') as [string, string])),
    ...(env['ENVOY_PORT'] ? { listenPort: Number(env['ENVOY_PORT']) } : {}),
  });
  say(`listening on :${standIn.port} — a stand-in for Envoy, for the demo only`);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void standIn.close().then(() => process.exit(0)));
}
