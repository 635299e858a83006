import * as grpc from '@grpc/grpc-js';
import { RESPONSE_FLAG_CODES } from '../../src/envoy/accesslog.js';
import { envoyServices } from '../../src/envoy/protos.js';
import { toStruct, type ProtoStruct, type Scalar } from '../../src/envoy/struct.js';

/** One finished request as Envoy's HTTP gRPC access logger would describe it. */
export interface LoggedRequest {
  readonly requestId: string;
  readonly responseCode?: number;
  /** The Check's dynamic metadata (envoy.filters.http.ext_authz), as returned to the stand-in Envoy. */
  readonly authzMetadata?: Readonly<Record<string, unknown>>;
  /** What usage.lua set (tokenwarden.usage). */
  readonly usage?: { readonly promptTokens: number; readonly completionTokens: number };
  /** Envoy's response flags by short code (DC, UT, UF, ...). */
  readonly flags?: readonly string[];
  /** Whether Envoy sent the request to a host (default true): upstream address and first-byte timing. */
  readonly forwarded?: boolean;
  /** Whether the status came from the upstream (default: forwarded and no flags) or was Envoy's own reply. */
  readonly statusFromUpstream?: boolean;
}

/**
 * Stands in for Envoy's gRPC access logger: one client stream per "worker", the identifier on the
 * first message only, entries batched into http_logs messages, metadata under
 * common_properties.metadata.filter_metadata, and no reply expected.
 */
export class AccessLogStandIn {
  private readonly client: grpc.Client & { StreamAccessLogs(callback: (err: grpc.ServiceError | null) => void): grpc.ClientWritableStream<object> };
  private stream: grpc.ClientWritableStream<object> | undefined;
  private done: Promise<void> = Promise.resolve();

  constructor(port: number) {
    const services = envoyServices() as unknown as { envoy: { service: { accesslog: { v3: { AccessLogService: grpc.ServiceClientConstructor } } } } };
    const Service = services.envoy.service.accesslog.v3.AccessLogService;
    this.client = new Service(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as typeof this.client;
  }

  /** Sends one batch on the open stream (opening it, with the identifier, if needed). */
  send(requests: readonly LoggedRequest[]): void {
    let first = false;
    if (this.stream === undefined) {
      first = true;
      this.done = new Promise((resolve, reject) => {
        this.stream = this.client.StreamAccessLogs((err) => (err ? reject(err) : resolve()));
      });
    }
    this.stream!.write({
      ...(first ? { identifier: { node: { id: 'envoy-stand-in', cluster: 'edge' }, log_name: 'tokenwarden' } } : {}),
      http_logs: { log_entry: requests.map(entry) },
    });
  }

  /** Ends the stream (as when Envoy reconnects) and waits for the server to close it. */
  async end(): Promise<void> {
    this.stream?.end();
    this.stream = undefined;
    await this.done;
  }

  close(): void {
    this.client.close();
  }
}

function entry(request: LoggedRequest): object {
  const filterMetadata: Record<string, ProtoStruct> = {};
  if (request.authzMetadata) filterMetadata['envoy.filters.http.ext_authz'] = toStruct(request.authzMetadata as Record<string, Scalar>);
  if (request.usage) {
    filterMetadata['tokenwarden.usage'] = toStruct({ prompt_tokens: request.usage.promptTokens, completion_tokens: request.usage.completionTokens });
  }
  const forwarded = request.forwarded ?? true;
  const flags = request.flags ?? [];
  const flagFields = Object.fromEntries(flags.map((code) => [Object.entries(RESPONSE_FLAG_CODES).find(([, c]) => c === code)![0], true]));
  const fromUpstream = request.statusFromUpstream ?? (forwarded && flags.length === 0);
  return {
    common_properties: {
      start_time: { seconds: String(Math.floor(Date.now() / 1000)) },
      ...(Object.keys(filterMetadata).length ? { metadata: { filter_metadata: filterMetadata } } : {}),
      ...(flags.length ? { response_flags: flagFields } : {}),
      ...(forwarded
        ? { upstream_remote_address: { socket_address: { address: '10.0.0.9', port_value: 8000 } }, time_to_first_upstream_tx_byte: { nanos: 500_000 } }
        : {}),
    },
    request: { request_id: request.requestId, request_method: 'POST', path: '/v1/chat/completions' },
    response: {
      ...(request.responseCode === undefined ? {} : { response_code: { value: request.responseCode } }),
      ...(request.responseCode !== undefined && fromUpstream ? { response_code_details: 'via_upstream' } : {}),
    },
  };
}
