import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ReloadUnavailableError, type ConfigReload } from '../config/reload.js';
import { ConfigError, type ConfigSnapshot } from '../config/snapshot.js';
import { callerOf } from '../identity/caller.js';
import { groupsFromClaim } from '../identity/identify.js';
import { wordingOf } from '../limit-kinds.js';
import { errorBody, retryAfterSeconds } from '../openai/responses.js';
import { BadRequestError, parseOpenAIRequest } from '../openai/request.js';
import type { QuotaEngine } from '../quota/engine.js';
import type { PromptTokenCounter } from '../tokens/counter.js';
import { TokenizerUnavailableError } from '../tokens/errors.js';
import { StoreUnavailableError } from '../quota/store.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { routeReports } from './reports-routes.js';
import { routeUi } from './ui/routes.js';
import { admitAdmin, readBody, send, sendError, soleParam } from './respond.js';
import { quotaDenialOf, type UsageReports } from '../reports/usage-reports.js';

export interface HttpServer {
  readonly port: number;
  close(): Promise<void>;
}

export interface HttpDeps {
  readonly config: () => ConfigSnapshot;
  readonly engine: QuotaEngine;
  readonly tokenizers: PromptTokenCounter;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Ready: configuration loaded, and the store reachable or fail-open configured. */
  readonly ready: () => Promise<boolean>;
  /**
   * POST /v1/admin/reload: App.reload, which logs it (rejects with ConfigError when the new limits are
   * refused, ReloadUnavailableError when there is nothing to reload).
   */
  readonly reload?: () => Promise<ConfigReload>;
  readonly reports: UsageReports;
}

/** /healthz, /readyz, /metrics and the usage API. Meant for the cluster network, not for clients. */
export async function startHttpServer(address: string, deps: HttpDeps): Promise<HttpServer> {
  const server = createServer((req, res) => {
    route(req, res, deps).catch((err: unknown) => {
      if (err instanceof StoreUnavailableError) {
        deps.metrics.storeErrors.inc({ operation: 'usage' });
        return send(res, 503, { error: { message: 'quota store unavailable', type: 'server_error', param: null, code: null } });
      }
      // A client that hung up mid-body is no fault of ours: nothing to answer, nothing to page anyone about.
      if (req.destroyed || (err as NodeJS.ErrnoException).code === 'ECONNRESET') return void deps.logger.debug({ err: (err as Error).message }, 'http client went away');
      deps.logger.error({ err }, 'http request failed');
      send(res, 500, { error: { message: 'internal error', type: 'server_error', param: null, code: null } });
    });
  });
  const { host, port } = splitAddress(address);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function route(req: IncomingMessage, res: ServerResponse, deps: HttpDeps): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const method = req.method ?? 'GET';
  // A path with dot segments or the like would be routed as its normal form (/v1/usage/../../metrics
  // is /metrics), reachable through a proxy route that matched the raw prefix: refuse it instead.
  if (url.pathname !== (req.url ?? '/').split('?', 1)[0]) return sendError(res, 400, 'The request path is not in normal form.');
  if (url.pathname === '/healthz' && method === 'GET') return send(res, 200, { status: 'ok' });
  if (url.pathname === '/readyz' && method === 'GET') {
    const ready = await deps.ready();
    return send(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready' });
  }
  if (url.pathname === '/metrics' && method === 'GET') {
    res.writeHead(200, { 'content-type': deps.metrics.registry.contentType });
    res.end(await deps.metrics.registry.metrics());
    return;
  }
  if (url.pathname === '/v1/tokenize') {
    if (method !== 'POST') {
      res.setHeader('allow', 'POST');
      return sendError(res, 405, 'Use POST.');
    }
    return tokenize(req, res, deps);
  }
  const usage = /^\/v1\/usage(?:\/([^/]+))?$/.exec(url.pathname);
  if (usage) {
    const named = usage[1] === undefined && !url.searchParams.has('user') ? undefined : namedUser('/v1/usage', usage[1], url.searchParams);
    if (named !== undefined && 'error' in named) return sendError(res, 400, named.error);
    if (method === 'GET') {
      // Usage is private: the admin, or that user's own API key (self-service), nobody else.
      const caller = callerOf(req.headers.authorization, deps.config());
      if (named === undefined) {
        if (caller.kind !== 'user') return sendError(res, 401, 'Send your API key (Authorization: Bearer) to read your own usage; an admin names the user: /v1/usage/{user} or /v1/usage?user=NAME.');
        return getUsage(res, deps, caller.user, url.searchParams.get('model'));
      }
      if (caller.kind === 'anonymous' || caller.kind === 'unknown-token') return sendError(res, 401, 'An API key or the admin token is required.');
      if (caller.kind === 'user' && caller.user !== named.user) return sendError(res, 403, "You may read your own usage only.");
      return getUsage(res, deps, named.user, url.searchParams.get('model'));
    }
    if (method === 'DELETE') {
      if (named === undefined) return sendError(res, 400, 'Name the user whose usage to reset: /v1/usage/{user} or /v1/usage?user=NAME.');
      return deleteUsage(req, res, deps, named.user);
    }
    res.setHeader('allow', 'GET, DELETE');
    return sendError(res, 405, 'Use GET or DELETE.');
  }
  const limits = /^\/v1\/limits(?:\/([^/]+))?$/.exec(url.pathname);
  if (limits) {
    if (method !== 'GET') {
      res.setHeader('allow', 'GET');
      return sendError(res, 405, 'Use GET.');
    }
    const named = namedUser('/v1/limits', limits[1], url.searchParams);
    if ('error' in named) return sendError(res, 400, named.error);
    if (!admitAdmin(req, res, deps)) return;
    return explainLimits(res, deps.config(), named.user, url.searchParams);
  }
  if (url.pathname === '/v1/admin/reload') {
    req.resume();
    if (method !== 'POST') {
      res.setHeader('allow', 'POST');
      return sendError(res, 405, 'Use POST.');
    }
    if (!admitAdmin(req, res, deps)) return;
    return reload(res, deps);
  }
  if (await routeReports(req, res, deps, url)) return;
  if (await routeUi(req, res, deps, url)) return;
  return sendError(res, 404, `No route for ${method} ${url.pathname}.`);
}

/**
 * The user a request to `route` names: in the path, percent-encoded, or as ?user= — which reaches
 * every name: as a path segment, ".." or "." is a dot segment, refused as not in normal form.
 */
function namedUser(route: string, segment: string | undefined, query: URLSearchParams): { user: string } | { error: string } {
  if (segment === undefined) {
    const user = soleParam(query, 'user');
    return user !== undefined ? { user } : { error: `Name one user: ${route}/{user} or ${route}?user=NAME.` };
  }
  if (query.has('user')) return { error: 'Name the user in the path or with ?user=, not both.' };
  try {
    return { user: decodeURIComponent(segment) };
  } catch {
    return { error: 'The user in the path is not valid percent-encoding.' };
  }
}

/**
 * GET /v1/limits/{user} or /v1/limits?user=NAME, [&model=m][&groups=a&groups=b]: for each configured
 * model (or the one named), every limit's enforced and shadow value with the level and source that
 * set it. Groups are what the caller's JWT would carry (this API cannot see it): each groups= value
 * is one group, read as the engine reads a JWT's groups claim.
 */
function explainLimits(res: ServerResponse, config: ConfigSnapshot, user: string, query: URLSearchParams): void {
  const model = query.get('model');
  if (model !== null && !config.hasModel(model)) return sendError(res, 404, `The model '${model}' is not configured.`);
  const groups = groupsFromClaim(query.getAll('groups'));
  const models = model === null ? config.modelNames : [model];
  send(res, 200, {
    user,
    groups,
    source: config.source,
    models: models.map((m) => ({ model: m, limits: config.explainLimits(user, m, groups) })),
  });
}

/** POST /v1/admin/reload: what SIGHUP does; 422 with the reason when the new limits are refused (the old ones keep serving). */
async function reload(res: ServerResponse, deps: HttpDeps): Promise<void> {
  if (!deps.reload) return sendError(res, 409, 'This instance has nothing to reload.');
  try {
    const result = await deps.reload();
    send(res, 200, { reloaded: true, ...result });
  } catch (err) {
    if (err instanceof ReloadUnavailableError) return sendError(res, 409, err.message);
    if (err instanceof ConfigError) {
      return send(res, 422, {
        reloaded: false,
        error: { message: `The new limits were refused; the previous ones stay in force. ${err.message}`, type: 'invalid_request_error', param: null, code: 'config_invalid' },
      });
    }
    throw err;
  }
}

async function getUsage(res: ServerResponse, deps: HttpDeps, user: string, model: string | null): Promise<void> {
  if (model !== null && !deps.config().hasModel(model)) return sendError(res, 404, `The model '${model}' is not configured.`);
  const models = await deps.engine.usage(user, model ?? undefined);
  send(res, 200, { user, models });
}

async function deleteUsage(req: IncomingMessage, res: ServerResponse, deps: HttpDeps, user: string): Promise<void> {
  if (deps.config().settings.admin.tokenSha256 === undefined) return sendError(res, 403, 'Resetting usage is disabled: no admin token is configured.');
  if (callerOf(req.headers.authorization, deps.config()).kind !== 'admin') return sendError(res, 401, 'A valid admin token is required.');
  await deps.engine.reset(user);
  deps.logger.info({ user }, 'usage reset by admin');
  res.writeHead(204).end();
}

/**
 * POST /v1/tokenize: a chat-completions or completions body in, vLLM's prompt_tokens out. Counting is
 * work done for the caller: it needs an API key (or the admin token), and a key's call counts as one
 * request against that user's requests-per-minute for the model (no tokens, no concurrency slot).
 */
async function tokenize(req: IncomingMessage, res: ServerResponse, deps: HttpDeps): Promise<void> {
  const config = deps.config();
  const caller = callerOf(req.headers.authorization, config);
  if (caller.kind === 'anonymous' || caller.kind === 'unknown-token') {
    req.resume();
    return sendError(res, 401, 'An API key is required to count tokens.');
  }
  const limit = config.settings.maxBodyBytes;
  const body = await readBody(req, limit);
  if (body === undefined) return sendError(res, 413, `The request body is larger than ${limit} bytes.`);
  try {
    // The path names neither endpoint, so the body decides: messages make it a chat request.
    const request = parseOpenAIRequest(body, 'by-body');
    const model = request.model ?? config.settings.defaultModel;
    if (model === undefined) return sendError(res, 400, "The request names no model: give 'model' in the JSON body.");
    if (!config.hasModel(model)) return sendError(res, 404, `The model '${model}' does not exist or is not served here.`);
    if (caller.kind === 'user') {
      const admission = await deps.engine.admitRequestOnly({ user: caller.user, groups: [], model });
      if (!admission.admitted) {
        deps.reports.denied(quotaDenialOf({ user: caller.user, groups: [], model }, admission));
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': String(retryAfterSeconds(admission.retryAfterMs ?? admission.windowMs)) });
        res.end(errorBody({ message: `Rate limit reached for ${model} on ${wordingOf(admission.limit)}.`, type: 'requests', param: null, code: 'rate_limit_exceeded' }));
        return;
      }
    }
    const sequences = await deps.tokenizers.count(model, request);
    send(res, 200, { model, prompt_tokens: sequences.reduce((sum, tokens) => sum + tokens, 0) });
  } catch (err) {
    if (err instanceof BadRequestError) return sendError(res, 400, err.message);
    if (err instanceof TokenizerUnavailableError) return sendError(res, 503, err.message);
    if (err instanceof StoreUnavailableError) throw err;
    deps.logger.warn({ err: (err as Error).message }, 'prompt could not be counted');
    return sendError(res, 400, 'The prompt could not be counted for this model.');
  }
}

/** "0.0.0.0:8080", "[::1]:8080", ":8080". */
export function splitAddress(address: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address);
  if (!match) throw new Error(`invalid address "${address}" (expected host:port)`);
  return { host: match[1] ?? (match[2] || '0.0.0.0'), port: Number(match[3]) };
}
