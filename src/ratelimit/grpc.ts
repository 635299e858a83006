import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ENVOY_PROTO_DIRS, PROTO_LOADER_OPTIONS } from '../envoy/protos.js';
import { StoreUnavailableError } from '../quota/store.js';
import type { Logger } from '../telemetry/logger.js';
import type { LimitOverride, RateLimitUnit } from './config.js';
import { RlsRequestError, type RateLimitService, type RlsDescriptor, type RlsResponse } from './service.js';

export const RATE_LIMIT_SERVICE = 'envoy.service.ratelimit.v3.RateLimitService';

const PROTO_DIR = fileURLToPath(new URL('../../proto', import.meta.url));
const UNIT_NUMBERS: ReadonlyMap<number, RateLimitUnit> = new Map([
  [1, 'second'], [2, 'minute'], [3, 'hour'], [4, 'day'], [5, 'month'], [6, 'year'], [7, 'week'],
] as const);
const UINT32_MAX = 4_294_967_295;

/**
 * ShouldRateLimit under Envoy's method path, with tokenwarden's declaration of its messages
 * (proto/tokenwarden/ratelimit_wire.proto: the Envoy protos in @grpc/grpc-js-xds lack a descriptor's
 * hits_addend).
 */
export function rateLimitServiceDefinition(): grpc.ServiceDefinition {
  const definition = protoLoader.loadSync('tokenwarden/ratelimit_wire.proto', { ...PROTO_LOADER_OPTIONS, includeDirs: [PROTO_DIR, ...ENVOY_PROTO_DIRS] });
  const method = (definition['tokenwarden.wire.ratelimit.v3.RateLimitService'] as grpc.ServiceDefinition)['ShouldRateLimit']!;
  return { ShouldRateLimit: { ...method, path: `/${RATE_LIMIT_SERVICE}/ShouldRateLimit` } };
}

interface WireRequest {
  domain?: string;
  hits_addend?: number;
  descriptors?: Array<{
    entries?: Array<{ key?: string; value?: string }>;
    limit?: { requests_per_unit?: number; unit?: number } | null;
    hits_addend?: { value?: string } | null;
  }>;
}

export function rateLimitHandlers(service: RateLimitService, logger: Logger): grpc.UntypedServiceImplementation {
  return {
    ShouldRateLimit(call: grpc.ServerUnaryCall<WireRequest, unknown>, callback: grpc.sendUnaryData<unknown>) {
      const request = call.request;
      service
        .shouldRateLimit({
          domain: request.domain ?? '',
          hitsAddend: request.hits_addend ?? 0,
          descriptors: (request.descriptors ?? []).map(descriptorOf),
        })
        .then(
          (response) => callback(null, wireResponse(response)),
          (err: Error) => {
            if (err instanceof RlsRequestError) return callback({ code: grpc.status.INVALID_ARGUMENT, details: err.message });
            // Only a store failure under failOpen: true fails the call (Envoy's failure_mode_deny decides).
            if (err instanceof StoreUnavailableError) return callback({ code: grpc.status.UNAVAILABLE, details: err.message });
            // Anything else is answered over limit: a failed call would be an allow under Envoy's default.
            logger.error({ err: err.message }, 'rate-limit decision failed; answering over limit');
            callback(null, { overall_code: 'OVER_LIMIT', statuses: [] });
          },
        );
    },
  };
}

function descriptorOf(wire: NonNullable<WireRequest['descriptors']>[number]): RlsDescriptor {
  const entries = (wire.entries ?? []).map((e) => ({ key: e.key ?? '', value: e.value ?? '' }));
  const unit = wire.limit ? UNIT_NUMBERS.get(wire.limit.unit ?? 0) : undefined;
  // An override with an unknown unit is ignored (upstream crashes on it): the configuration decides.
  const limit: LimitOverride | undefined = wire.limit && unit ? { requestsPerUnit: wire.limit.requests_per_unit ?? 0, unit } : undefined;
  const hits = wire.hits_addend ? Number(wire.hits_addend.value ?? '0') : undefined;
  return {
    entries,
    ...(limit ? { limit } : {}),
    ...(hits === undefined ? {} : { hitsAddend: Number.isSafeInteger(hits) ? hits : Infinity }),
  };
}

function wireResponse(response: RlsResponse): object {
  return {
    overall_code: response.overallCode,
    statuses: response.statuses.map((s) => ({
      code: s.code,
      ...(s.currentLimit
        ? { current_limit: { requests_per_unit: Math.min(s.currentLimit.requestsPerUnit, UINT32_MAX), unit: s.currentLimit.unit.toUpperCase(), name: s.currentLimit.name ?? '' } }
        : {}),
      limit_remaining: Math.min(s.limitRemaining, UINT32_MAX),
      ...(s.durationUntilResetS === undefined ? {} : { duration_until_reset: { seconds: String(s.durationUntilResetS) } }),
    })),
    response_headers_to_add: response.responseHeaders.map(([key, value]) => ({ key, value })),
  };
}
