import * as grpc from '@grpc/grpc-js';
import { AbandonedError, type Gatekeeper, type RequestView, type Verdict } from '../admission/gatekeeper.js';
import { StoreUnavailableError } from '../quota/store.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { errorBody } from '../openai/responses.js';
import { fromStruct, toStruct, type ProtoStruct } from './struct.js';

/** The parts of envoy.service.auth.v3.CheckRequest that are read (proto-loader, keepCase). */
interface CheckRequest {
  attributes?: {
    request?: {
      http?: {
        method?: string;
        path?: string;
        headers?: Record<string, string>;
        header_map?: { headers?: Array<{ key?: string; value?: string; raw_value?: Buffer }> };
        body?: string;
        raw_body?: Buffer;
      };
    };
    metadata_context?: { filter_metadata?: Record<string, ProtoStruct> };
  };
}

/** Namespace Envoy writes CheckResponse.dynamic_metadata under, whatever the filter is called. */
export const EXT_AUTHZ_METADATA_NAMESPACE = 'envoy.filters.http.ext_authz';

// google.rpc.Code values for the CheckResponse status; any non-OK status is a denial to Envoy.
const RPC_CODE_FOR_HTTP: Record<number, number> = { 400: 3, 401: 16, 404: 5, 413: 3, 429: 8, 500: 13, 503: 14 };
const PERMISSION_DENIED = 7;
/** A decision slower than this may have kept a cancellation from being read. */
const SLOW_DECISION_MS = 2;

export function checkRequestToView(request: CheckRequest): RequestView {
  const http = request.attributes?.request?.http ?? {};
  const headers = new Map<string, string>();
  for (const [key, value] of Object.entries(http.headers ?? {})) headers.set(key.toLowerCase(), value);
  for (const entry of http.header_map?.headers ?? []) {
    if (!entry.key) continue;
    const value = entry.raw_value?.length ? entry.raw_value.toString('utf8') : (entry.value ?? '');
    const key = entry.key.toLowerCase();
    const previous = headers.get(key);
    headers.set(key, previous === undefined ? value : `${previous},${value}`);
  }
  const filterMetadata: Record<string, unknown> = {};
  for (const [namespace, struct] of Object.entries(request.attributes?.metadata_context?.filter_metadata ?? {})) {
    filterMetadata[namespace] = fromStruct(struct);
  }
  return {
    method: http.method ?? headers.get(':method') ?? '',
    path: http.path ?? headers.get(':path') ?? '/',
    headers,
    body: http.raw_body?.length ? http.raw_body.toString('utf8') : (http.body ?? ''),
    bodyTruncated: headers.get('x-envoy-auth-partial-body') === 'true',
    filterMetadata,
  };
}

export function verdictToCheckResponse(verdict: Verdict): object {
  if (verdict.kind === 'allow') {
    const metadata: Record<string, string | number> = { user: verdict.user };
    if (verdict.charge) {
      metadata['model'] = verdict.charge.model;
      metadata['prompt_tokens'] = verdict.charge.promptTokens;
      metadata['reserved_tokens'] = verdict.charge.reservedTokens;
      metadata['reservation_id'] = verdict.charge.reservationId;
    }
    return {
      status: { code: 0 },
      ok_response: { response_headers_to_add: headerOptions(verdict.responseHeaders) },
      dynamic_metadata: toStruct(metadata),
    };
  }
  return {
    status: { code: RPC_CODE_FOR_HTTP[verdict.status] ?? PERMISSION_DENIED, message: verdict.reason },
    denied_response: {
      status: { code: verdict.status },
      headers: headerOptions(verdict.headers),
      body: verdict.body,
    },
  };
}

function headerOptions(headers: Readonly<Record<string, string>>) {
  // append: false explicitly, so every Envoy version overwrites rather than appends.
  return Object.entries(headers).map(([key, value]) => ({ header: { key, value }, append: { value: false } }));
}

/** An unexpected failure is denied (500), never failed as an RPC that failure_mode_allow would turn into an allow. */
const INTERNAL_ERROR_VERDICT: Verdict = {
  kind: 'deny',
  status: 500,
  reason: 'internal',
  body: errorBody({ message: 'The quota service failed to decide this request.', type: 'server_error', param: null, code: 'internal_error' }),
  headers: { 'content-type': 'application/json' },
};

/**
 * envoy.service.auth.v3.Authorization/Check: a thin adapter over the gatekeeper. The call fails (so
 * that Envoy's failure_mode_allow decides) only when the store is down and the config says failOpen.
 */
export function authorizationHandlers(gatekeeper: Gatekeeper, metrics: Metrics, logger: Logger): grpc.UntypedServiceImplementation {
  return {
    Check(call: grpc.ServerUnaryCall<CheckRequest, object>, callback: grpc.sendUnaryData<object>) {
      const stopTimer = metrics.checkDuration.startTimer();
      const startedMs = Date.now();
      gatekeeper
        .decide(checkRequestToView(call.request), abandonedCheck(call))
        .then(async (verdict) => {
          // A long decision (a prompt counted on this thread) may have hidden a cancellation still
          // unread on the socket: let it be read, so an answer nobody receives is taken back.
          if (verdict.kind === 'allow' && Date.now() - startedMs > SLOW_DECISION_MS) await new Promise(setImmediate);
          if (call.cancelled && verdict.kind === 'allow') return gatekeeper.takeBack(verdict);
          callback(null, verdictToCheckResponse(verdict));
        })
        .catch((err: unknown) => {
          if (err instanceof AbandonedError) {
            metrics.decisions.inc({ result: 'abandoned', reason: 'caller_gone' });
            return callback({ code: grpc.status.CANCELLED, details: 'the caller went away; nothing was charged' });
          }
          if (err instanceof StoreUnavailableError) {
            metrics.decisions.inc({ result: 'error', reason: 'store_unavailable' });
            return callback({ code: grpc.status.UNAVAILABLE, details: 'store unavailable' });
          }
          logger.error({ err }, 'check failed unexpectedly');
          metrics.decisions.inc({ result: 'denied', reason: 'internal' });
          callback(null, verdictToCheckResponse(INTERNAL_ERROR_VERDICT));
        })
        .finally(stopTimer);
    },
  };
}

/** Whether the client has cancelled the call or its deadline has passed (asked, not listened for: no timer per Check). */
function abandonedCheck(call: grpc.ServerUnaryCall<unknown, unknown>): () => boolean {
  const deadline = call.getDeadline();
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  return () => call.cancelled || Date.now() >= deadlineMs;
}
