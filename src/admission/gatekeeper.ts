import type { ConfigSnapshot } from '../config/snapshot.js';
import { CONCURRENCY_LIMIT, counterKind, wordingOf } from '../limit-kinds.js';
import { DenialMemo } from './denial-memo.js';
import { ContextLengthError, tokensToReserve } from '../openai/reservation.js';
import { identify } from '../identity/identify.js';
import { BadRequestError, endpointKind, modelFromPath, parseOpenAIRequest } from '../openai/request.js';
import { errorBody, rateLimitHeaders, retryAfterSeconds, type OpenAIError } from '../openai/responses.js';
import type { Admission, QuotaEngine } from '../quota/engine.js';
import { StoreUnavailableError } from '../quota/store.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { reportShadowDenials } from '../telemetry/shadow-denials.js';
import { quotaDenialOf, type UsageObserver } from '../reports/usage-reports.js';
import type { PromptTokenCounter } from '../tokens/counter.js';
import { TokenizerUnavailableError } from '../tokens/errors.js';

/** The caller went away (cancelled, or past its deadline) before the verdict: nothing was charged. */
export class AbandonedError extends Error {
  override name = 'AbandonedError';
}

/** The parts of an HTTP request that admission looks at, independent of how they arrived. */
export interface RequestView {
  readonly method: string;
  /** :path, query string included. */
  readonly path: string;
  /** Lower-case header names. */
  readonly headers: ReadonlyMap<string, string>;
  readonly body: string;
  /** Envoy sent only the first max_request_bytes of the body. */
  readonly bodyTruncated: boolean;
  readonly filterMetadata: Readonly<Record<string, unknown>>;
}

export type Verdict =
  | {
      readonly kind: 'allow';
      readonly user: string;
      /** Absent for requests that name no model and are let through uncharged (GET /v1/models). */
      readonly charge?: {
        readonly model: string;
        readonly promptTokens: number;
        readonly reservedTokens: number;
        readonly reservationId: string;
        /** Identifies the admission to takeBack. */
        readonly attempt: string;
      };
      /** Headers to add to the response the client receives. */
      readonly responseHeaders: Readonly<Record<string, string>>;
    }
  | {
      readonly kind: 'deny';
      readonly status: number;
      readonly body: string;
      readonly headers: Readonly<Record<string, string>>;
      /** For metrics and logs: the limit or the kind of refusal. */
      readonly reason: string;
    };

const BODYLESS_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** How long a concurrency denial is remembered at most: a settlement can free a slot at any moment. */
const CONCURRENCY_MEMO_MS = 250;

/**
 * Decides one request: who is calling, which model, how many prompt tokens, and whether the quota
 * has room. Store failures are rethrown as StoreUnavailableError when the config says fail open, so
 * the transport can fail the call and let Envoy's failure_mode_allow decide.
 */
export class Gatekeeper {
  private readonly denials = new DenialMemo();

  constructor(
    private readonly deps: {
      readonly config: () => ConfigSnapshot;
      readonly engine: QuotaEngine;
      readonly counter: PromptTokenCounter;
      readonly metrics: Metrics;
      readonly logger: Logger;
      /** False until a configuration is in force (with --kube, until the first sync). */
      readonly configured?: () => boolean;
      /** The quota engine's clock (for how long a remembered denial holds). */
      readonly clock?: () => number;
      /** Told of every 429 (the usage reports). */
      readonly usage?: Pick<UsageObserver, 'denied'>;
    },
  ) {}

  /**
   * `abandoned` says whether the caller has given up: before the reservation nothing is reserved, and
   * a reservation that raced it is taken back, so an abandoned Check costs nothing.
   */
  async decide(request: RequestView, abandoned: () => boolean = () => false): Promise<Verdict> {
    const verdict = await this.decideUncounted(request, abandoned);
    const { metrics, logger } = this.deps;
    if (verdict.kind === 'allow') {
      metrics.decisions.inc({ result: 'allowed', reason: verdict.charge ? 'within_limits' : 'uncharged' });
      if (verdict.charge) metrics.reservedTokens.inc({ model: verdict.charge.model }, verdict.charge.reservedTokens);
      logger.debug({ decision: 'allow', user: verdict.user, ...verdict.charge }, 'check');
    } else {
      metrics.decisions.inc({ result: 'denied', reason: verdict.reason });
      logger.debug({ decision: 'deny', status: verdict.status, reason: verdict.reason }, 'check');
    }
    return verdict;
  }

  private storeUnavailable(config: ConfigSnapshot, err: StoreUnavailableError): Verdict {
    if (config.settings.failOpen) throw err;
    return storeUnavailableVerdict();
  }

  private async decideUncounted(request: RequestView, abandoned: () => boolean): Promise<Verdict> {
    const config = this.deps.config();
    if (this.deps.configured && !this.deps.configured()) return this.storeUnavailable(config, new StoreUnavailableError('no limits configuration yet'));
    const identity = identify({ headers: request.headers, filterMetadata: request.filterMetadata }, config);
    if ('error' in identity) {
      return deny(401, 'unauthenticated', {
        message: identity.error,
        type: 'invalid_request_error',
        param: null,
        code: 'invalid_api_key',
      });
    }
    const { user } = identity;

    const bodyBytes = Buffer.byteLength(request.body, 'utf8');
    if (request.bodyTruncated || bodyBytes > config.settings.maxBodyBytes) {
      return deny(413, 'body_too_large', {
        message: `The request body is larger than tokenwarden accepts (${config.settings.maxBodyBytes} bytes), so its tokens cannot be counted.`,
        type: 'invalid_request_error',
        param: null,
        code: 'request_too_large',
      });
    }

    if (bodyBytes === 0 && BODYLESS_METHODS.has(request.method.toUpperCase()) && !modelFromPath(request.path)) {
      return { kind: 'allow', user, responseHeaders: {} };
    }
    const endpoint = endpointKind(request.path);
    if (endpoint === undefined) {
      return deny(404, 'unsupported_endpoint', {
        message: `${request.method} ${request.path.split('?', 1)[0]} is not served here: tokenwarden meters /v1/chat/completions and /v1/completions only.`,
        type: 'invalid_request_error',
        param: null,
        code: 'unsupported_endpoint',
      });
    }

    let parsed;
    try {
      parsed = parseOpenAIRequest(bodyBytes === 0 ? '{}' : request.body, endpoint);
    } catch (err) {
      if (!(err instanceof BadRequestError)) throw err;
      return deny(400, 'bad_request', { message: err.message, type: 'invalid_request_error', param: err.param, code: null });
    }

    const model = parsed.model ?? modelFromPath(request.path) ?? config.settings.defaultModel;
    if (model === undefined) {
      return deny(400, 'bad_request', {
        message: "The request names no model: give 'model' in the JSON body.",
        type: 'invalid_request_error',
        param: 'model',
        code: null,
      });
    }
    if (!config.hasModel(model)) {
      return deny(404, 'unknown_model', {
        message: `The model '${model}' does not exist or is not served here.`,
        type: 'invalid_request_error',
        param: 'model',
        code: 'model_not_found',
      });
    }
    const remembered = this.denials.recall(user, model, config, this.now());
    if (remembered !== undefined) {
      this.deps.metrics.modelDecisions.inc({ model, result: 'rate_limited' });
      this.deps.usage?.denied(remembered.denial);
      return remembered.verdict;
    }
    // A large prompt costs real work to count: first make sure no limit that ignores its size denies it anyway.
    if (bodyBytes > config.settings.tokenization.workerThresholdBytes) {
      let early;
      try {
        early = await this.deps.engine.requestLimitDenial({ user, groups: identity.groups, model });
      } catch (err) {
        if (!(err instanceof StoreUnavailableError)) throw err;
        return this.storeUnavailable(config, err);
      }
      if (early !== undefined) return this.remembered(user, identity.groups, model, config, early);
    }

    let sequences: readonly number[];
    try {
      sequences = await this.deps.counter.count(model, parsed);
    } catch (err) {
      if (err instanceof BadRequestError) {
        return deny(400, 'bad_request', { message: err.message, type: 'invalid_request_error', param: err.param, code: null });
      }
      if (err instanceof TokenizerUnavailableError) {
        return deny(503, 'tokenizer_unavailable', { message: err.message, type: 'server_error', param: 'model', code: 'tokenizer_unavailable' });
      }
      // Whatever else stops counting (a pathological prompt) refuses the request: it is never let through uncounted.
      this.deps.logger.warn({ err: (err as Error).message, model }, 'prompt could not be counted');
      return deny(400, 'bad_request', { message: 'The prompt could not be counted for this model.', type: 'invalid_request_error', param: 'messages', code: null });
    }
    const promptTokens = sequences.reduce((sum, tokens) => sum + tokens, 0);
    let tokens: number;
    try {
      tokens = tokensToReserve(parsed, sequences, config.settings.models[model]?.maxModelLen, config.settings.reservation.defaultCompletionTokens);
    } catch (err) {
      if (err instanceof BadRequestError) return deny(400, 'bad_request', { message: err.message, type: 'invalid_request_error', param: err.param, code: null });
      if (!(err instanceof ContextLengthError)) throw err;
      return { kind: 'deny', status: 400, reason: 'context_length_exceeded', body: err.body, headers: { 'content-type': 'application/json' } };
    }

    if (abandoned()) throw new AbandonedError('the caller went away before the reservation');
    let admission: Admission;
    try {
      admission = await this.deps.engine.admit({ user, groups: identity.groups, model, tokens, promptTokens, requestId: request.headers.get('x-request-id') });
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      this.deps.metrics.storeErrors.inc({ operation: 'reserve' });
      this.deps.logger.warn({ err: err.message, failOpen: config.settings.failOpen }, 'quota store unavailable');
      return this.storeUnavailable(config, err);
    }
    if (admission.admitted && abandoned()) {
      await this.deps.engine.cancel({ user, model }, admission.reservationId, admission.attempt).catch((err: unknown) =>
        this.deps.logger.warn({ err: (err as Error).message }, 'could not take back an abandoned reservation; it expires by itself'),
      );
      throw new AbandonedError('the caller went away during the reservation');
    }

    if (admission.admitted) {
      reportShadowDenials(this.deps, { user, model, wouldDeny: admission.wouldDeny, via: 'ext_authz' });
      this.deps.metrics.modelDecisions.inc({ model, result: 'allowed' });
      this.deps.metrics.userQuota.observe(user, model, admission.windows);
      return {
        kind: 'allow',
        user,
        charge: { model, promptTokens, reservedTokens: admission.reservedTokens, reservationId: admission.reservationId, attempt: admission.attempt },
        responseHeaders: rateLimitHeaders(admission.view),
      };
    }
    return this.remembered(user, identity.groups, model, config, admission);
  }

  /**
   * The 429 for a denial; one that no smaller request escapes is remembered until it could lift (a
   * slot may free at any settlement, so concurrency briefly): a knocking caller is not counted again.
   */
  private remembered(user: string, groups: readonly string[], model: string, config: ConfigSnapshot, admission: Extract<Admission, { admitted: false }>): Verdict {
    const denial = denyByLimit(admission, model);
    this.deps.metrics.modelDecisions.inc({ model, result: 'rate_limited' });
    const quotaDenial = quotaDenialOf({ user, groups, model }, admission);
    this.deps.usage?.denied(quotaDenial);
    // A daily or monthly window that denies is as near its quota as a user gets: its share is reported
    // too (observe keeps only those windows), or a user refused all day would never show as near quota.
    if (admission.view.tokens !== undefined && admission.view.tokens.name === admission.limit) {
      this.deps.metrics.userQuota.observe(user, model, [admission.view.tokens]);
    }
    if (admission.limit === CONCURRENCY_LIMIT.name || counterKind(admission.limit).counts === 'requests') {
      const holdMs = admission.limit === CONCURRENCY_LIMIT.name ? Math.min(CONCURRENCY_MEMO_MS, admission.retryAfterMs ?? 0) : (admission.retryAfterMs ?? 0);
      if (holdMs > 0) this.denials.remember(user, model, config, { verdict: denial, denial: quotaDenial }, this.now() + holdMs);
    }
    return denial;
  }

  /** Takes back an admission whose answer never reached the caller (it went away as the verdict was sent). */
  async takeBack(verdict: Extract<Verdict, { kind: 'allow' }>): Promise<void> {
    if (verdict.charge === undefined) return;
    const { model, reservationId, attempt } = verdict.charge;
    this.deps.metrics.decisions.inc({ result: 'abandoned', reason: 'caller_gone' });
    await this.deps.engine.cancel({ user: verdict.user, model }, reservationId, attempt).catch((err: unknown) =>
      this.deps.logger.warn({ err: (err as Error).message }, 'could not take back an abandoned reservation; it expires by itself'),
    );
  }

  private now(): number {
    return (this.deps.clock ?? Date.now)();
  }
}

/** With failOpen the error propagates (the transport fails the call, Envoy decides); otherwise a 503 denial. */
function storeUnavailableVerdict(): Verdict {
  return deny(503, 'store_unavailable', {
    message: 'The quota service is temporarily unavailable. Please retry shortly.',
    type: 'server_error',
    param: null,
    code: 'quota_unavailable',
  });
}

function deny(status: number, reason: string, error: OpenAIError, headers: Record<string, string> = {}): Verdict {
  return { kind: 'deny', status, reason, body: errorBody(error), headers: { 'content-type': 'application/json', ...headers } };
}

function denyByLimit(admission: Extract<Admission, { admitted: false }>, model: string): Verdict {
  const wording = wordingOf(admission.limit);
  const isTokens = admission.limit !== CONCURRENCY_LIMIT.name && counterKind(admission.limit).counts === 'tokens';
  const neverFits = admission.retryAfterMs === undefined;
  const message = neverFits
    ? `Request too large for ${model} on ${wording}: Limit ${admission.limitValue}, Requested ${admission.requested}. ` +
      (isTokens ? 'Reduce the prompt or max_tokens; retrying will not help.' : 'Retrying will not help.')
    : `Rate limit reached for ${model} on ${wording}: Limit ${admission.limitValue}, Requested ${admission.requested}. ` +
      `Please try again in ${retryAfterSeconds(admission.retryAfterMs!)}s.`;
  // A request that can never fit still gets a retry-after (the contract's 429 always has one): the window's length.
  const retryMs = admission.retryAfterMs ?? admission.windowMs;
  return deny(
    429,
    admission.limit,
    { message, type: isTokens ? 'tokens' : 'requests', param: null, code: 'rate_limit_exceeded' },
    {
      'retry-after': String(retryAfterSeconds(retryMs)),
      'x-tokenwarden-limit': admission.limit,
      ...rateLimitHeaders(admission.view),
    },
  );
}
