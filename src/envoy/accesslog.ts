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
  common_properties?: { metadata?: { filter_metadata?: Record<string, ProtoStruct> } };
  response?: { response_code?: { value?: number } };
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
