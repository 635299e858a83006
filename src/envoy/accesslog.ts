import type * as grpc from '@grpc/grpc-js';
import type { Reconciler } from '../accounting/reconciler.js';
import type { CompletedRequest } from '../accounting/rules.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { EXT_AUTHZ_METADATA_NAMESPACE } from './authz.js';
import { fromStruct, type ProtoStruct } from './struct.js';

/** Namespace envoy/usage.lua writes vLLM's usage under. */
export const USAGE_METADATA_NAMESPACE = 'tokenwarden.usage';

/** The parts of envoy.data.accesslog.v3.HTTPAccessLogEntry that are read (proto-loader, keepCase). */
interface HttpAccessLogEntry {
  common_properties?: {
    metadata?: { filter_metadata?: Record<string, ProtoStruct> };
    response_flags?: Record<string, unknown>;
    upstream_remote_address?: object;
    time_to_first_upstream_tx_byte?: object;
  };
  response?: { response_code?: { value?: number }; response_code_details?: string };
}

/** envoy.data.accesslog.v3.ResponseFlags fields → the short codes Envoy's logs print. */
export const RESPONSE_FLAG_CODES: Readonly<Record<string, string>> = {
  failed_local_healthcheck: 'LH',
  no_healthy_upstream: 'UH',
  upstream_request_timeout: 'UT',
  local_reset: 'LR',
  upstream_remote_reset: 'UR',
  upstream_connection_failure: 'UF',
  upstream_connection_termination: 'UC',
  upstream_overflow: 'UO',
  no_route_found: 'NR',
  delay_injected: 'DI',
  fault_injected: 'FI',
  rate_limited: 'RL',
  unauthorized_details: 'UAEX',
  rate_limit_service_error: 'RLSE',
  downstream_connection_termination: 'DC',
  upstream_retry_limit_exceeded: 'URX',
  stream_idle_timeout: 'SI',
  invalid_envoy_request_headers: 'IH',
  downstream_protocol_error: 'DPE',
  upstream_max_stream_duration_reached: 'UMSDR',
  response_from_cache_filter: 'RFCF',
  no_filter_config_found: 'NFCF',
  duration_timeout: 'DT',
  upstream_protocol_error: 'UPE',
  no_cluster_found: 'NC',
  overload_manager: 'OM',
  dns_resolution_failure: 'DF',
  downstream_remote_reset: 'DR',
};

/** The short codes of the flags set in an entry (a flag is set when true, or a message for unauthorized_details). */
export function responseFlagCodes(flags: Record<string, unknown> | undefined): Set<string> {
  const codes = new Set<string>();
  for (const [field, value] of Object.entries(flags ?? {})) {
    const code = RESPONSE_FLAG_CODES[field];
    if (code !== undefined && Object.hasOwn(RESPONSE_FLAG_CODES, field) && (value === true || (typeof value === 'object' && value !== null))) codes.add(code);
  }
  return codes;
}
interface StreamAccessLogsMessage {
  http_logs?: { log_entry?: HttpAccessLogEntry[] };
}

export function entryToCompletedRequest(entry: HttpAccessLogEntry): CompletedRequest {
  const metadata = entry.common_properties?.metadata?.filter_metadata ?? {};
  const authz = fromStruct(metadata[EXT_AUTHZ_METADATA_NAMESPACE]);
  const usage = fromStruct(metadata[USAGE_METADATA_NAMESPACE]);
  const { reservation_id: id, user, model } = authz;
  const { prompt_tokens: prompt, completion_tokens: completion } = usage;
  return {
    ...(typeof id === 'string' && typeof user === 'string' && typeof model === 'string' ? { reservation: { id, user, model } } : {}),
    ...(isCount(prompt) && isCount(completion) ? { usage: { promptTokens: prompt, completionTokens: completion } } : {}),
    responseCode: entry.response?.response_code?.value ?? 0,
    flags: responseFlagCodes(entry.common_properties?.response_flags),
    sentUpstream: entry.common_properties?.time_to_first_upstream_tx_byte !== undefined,
    upstreamHost: entry.common_properties?.upstream_remote_address !== undefined,
    statusFromUpstream: entry.response?.response_code_details === 'via_upstream',
  };
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs: Envoy streams batches of entries and
 * never expects an answer; each batch is settled as it arrives. The identifier (first message only)
 * is not needed: everything is keyed by the reservation in each entry's metadata.
 */
export function accessLogHandlers(reconciler: Reconciler, metrics: Metrics, logger: Logger): grpc.UntypedServiceImplementation {
  return {
    StreamAccessLogs(call: grpc.ServerReadableStream<StreamAccessLogsMessage, object>, callback: grpc.sendUnaryData<object>) {
      metrics.accessLogStreams.inc();
      let open = true;
      const closed = () => {
        if (open) metrics.accessLogStreams.dec();
        open = false;
      };
      call.on('data', (message: StreamAccessLogsMessage) => {
        const entries = message.http_logs?.log_entry ?? [];
        reconciler.settle(entries.map(entryToCompletedRequest)).catch((err: unknown) => logger.error({ err }, 'settling failed'));
      });
      call.on('end', () => {
        closed();
        callback(null, {});
      });
      call.on('error', closed);
      call.on('cancelled', closed);
    },
  };
}
