import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { envoyServices } from './protos.js';
import { fromStruct, type ProtoStruct } from './struct.js';

/*
 * A stand-in for Envoy's ext_authz HTTP filter, for the demo command and the tests: it builds
 * CheckRequests the way Envoy does with with_request_body (headers map with pseudo-headers and
 * x-request-id, body as a string or raw_body bytes), calls the Authorization service, and turns the
 * CheckResponse into what Envoy would send the client.
 */
export interface ClientRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  /** An object is sent as JSON; a string or Buffer as is. */
  body?: unknown;
  /** Send the body as raw_body (pack_as_bytes) instead of body. */
  packAsBytes?: boolean;
  /** Use header_map (encode_raw_headers) instead of the headers map. */
  rawHeaders?: boolean;
  requestId?: string;
  metadataContext?: Record<string, ProtoStruct>;
  /** The gRPC deadline, as Envoy's ext_authz timeout sets it (default 10 s). */
  timeoutMs?: number;
  /** Cancels the call when aborted, as Envoy does when the client goes away during the Check. */
  signal?: AbortSignal;
}

export interface EnvoyOutcome {
  /** 200 when Envoy would forward the request upstream; else the local reply's status. */
  readonly status: number;
  readonly allowed: boolean;
  readonly grpcCode: number;
  /** Headers the client receives (from response_headers_to_add or the denied response). */
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly metadata: Record<string, unknown>;
  readonly requestId: string;
}

interface HeaderValueOption {
  header?: { key?: string; value?: string };
}
interface CheckResponse {
  status?: { code?: number };
  ok_response?: { response_headers_to_add?: HeaderValueOption[] };
  denied_response?: { status?: { code?: string | number }; headers?: HeaderValueOption[]; body?: string };
  dynamic_metadata?: ProtoStruct;
}

const HTTP_STATUS_BY_NAME: Record<string, number> = {
  BadRequest: 400,
  Unauthorized: 401,
  Forbidden: 403,
  NotFound: 404,
  PayloadTooLarge: 413,
  TooManyRequests: 429,
  InternalServerError: 500,
  ServiceUnavailable: 503,
};

type AuthorizationClient = grpc.Client & {
  Check(
    request: object,
    options: grpc.CallOptions,
    callback: (err: grpc.ServiceError | null, response: CheckResponse) => void,
  ): grpc.ClientUnaryCall;
};

/** The CheckRequest Envoy's ext_authz filter would send for a client request (with_request_body). */
export function buildCheckRequest(request: ClientRequest): { checkRequest: object; requestId: string } {
  const requestId = request.requestId ?? randomUUID();
  const method = request.method ?? 'POST';
  const path = request.path ?? '/v1/chat/completions';
  const bodyBytes =
    request.body === undefined
      ? Buffer.alloc(0)
      : Buffer.isBuffer(request.body)
        ? request.body
        : Buffer.from(typeof request.body === 'string' ? request.body : JSON.stringify(request.body));
  const headers: Record<string, string> = {
    ':method': method,
    ':path': path,
    ':authority': 'models.example',
    ':scheme': 'http',
    'x-request-id': requestId,
    'x-forwarded-proto': 'http',
    ...(bodyBytes.length ? { 'content-type': 'application/json', 'content-length': String(bodyBytes.length) } : {}),
    ...Object.fromEntries(Object.entries(request.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
  };
  const http: Record<string, unknown> = {
    id: String(Math.floor(Math.random() * 1e9)),
    method,
    path,
    host: 'models.example',
    scheme: 'http',
    protocol: 'HTTP/1.1',
    size: String(bodyBytes.length),
  };
  if (request.rawHeaders) {
    http['header_map'] = { headers: Object.entries(headers).map(([key, value]) => ({ key, raw_value: Buffer.from(value) })) };
  } else {
    http['headers'] = headers;
  }
  if (bodyBytes.length) {
    if (request.packAsBytes) http['raw_body'] = bodyBytes;
    else http['body'] = bodyBytes.toString('utf8');
  }
  const checkRequest = {
    attributes: {
      source: { address: { socket_address: { address: '10.0.0.7', port_value: 51234 } } },
      request: { time: { seconds: String(Math.floor(Date.now() / 1000)) }, http },
      ...(request.metadataContext ? { metadata_context: { filter_metadata: request.metadataContext } } : {}),
    },
  };
  return { checkRequest, requestId };
}

export class EnvoyCheckClient {
  private readonly client: AuthorizationClient;

  constructor(address: string) {
    const services = envoyServices() as unknown as {
      envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } };
    };
    const Authorization = services.envoy.service.auth.v3.Authorization;
    this.client = new Authorization(address, grpc.credentials.createInsecure()) as unknown as AuthorizationClient;
  }

  close(): void {
    this.client.close();
  }

  /** Sends the Check; rejects with the gRPC error if the call itself fails. */
  async check(request: ClientRequest): Promise<EnvoyOutcome> {
    const { checkRequest, requestId } = buildCheckRequest(request);
    const response = await new Promise<CheckResponse>((resolve, reject) => {
      const call = this.client.Check(checkRequest, { deadline: Date.now() + (request.timeoutMs ?? 10_000) }, (err, res) => (err ? reject(err) : resolve(res)));
      request.signal?.addEventListener('abort', () => call.cancel(), { once: true });
    });
    const code = response.status?.code ?? 0;
    const metadata = fromStruct(response.dynamic_metadata);
    if (code === 0) {
      return { status: 200, allowed: true, grpcCode: 0, headers: headerMap(response.ok_response?.response_headers_to_add), body: '', metadata, requestId };
    }
    const statusCode = response.denied_response?.status?.code;
    const status = typeof statusCode === 'number' ? statusCode : (HTTP_STATUS_BY_NAME[statusCode ?? ''] ?? 403);
    return {
      status,
      allowed: false,
      grpcCode: code,
      headers: headerMap(response.denied_response?.headers),
      body: response.denied_response?.body ?? '',
      metadata,
      requestId,
    };
  }
}

function headerMap(options: HeaderValueOption[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const option of options ?? []) if (option.header?.key) out[option.header.key] = option.header.value ?? '';
  return out;
}
