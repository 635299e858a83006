import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Reconciler } from '../accounting/reconciler.js';
import type { Gatekeeper } from '../admission/gatekeeper.js';
import { accessLogHandlers } from './accesslog.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { authorizationHandlers } from './authz.js';
import { serviceDefinition } from './protos.js';
import { RATE_LIMIT_SERVICE, rateLimitHandlers, rateLimitServiceDefinition } from '../ratelimit/grpc.js';
import type { RateLimitService } from '../ratelimit/service.js';

export const AUTHORIZATION_SERVICE = 'envoy.service.auth.v3.Authorization';
export const ACCESS_LOG_SERVICE = 'envoy.service.accesslog.v3.AccessLogService';

export interface GrpcServer {
  /** The bound port (useful when started on port 0). */
  readonly port: number;
  readonly health: HealthImplementation;
  /** Stops accepting calls, lets running ones finish for up to `graceMs`, then forces the rest closed. */
  shutdown(graceMs: number): Promise<void>;
}

/** One gRPC server: Envoy's Authorization, RateLimitService and AccessLogService, plus grpc.health.v1.Health. */
export async function startGrpcServer(
  address: string,
  deps: { gatekeeper: Gatekeeper; reconciler: Reconciler; rateLimit: RateLimitService; metrics: Metrics; logger: Logger },
): Promise<GrpcServer> {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': 32 * 1024 * 1024,
    'grpc.keepalive_permit_without_calls': 1,
  });
  server.addService(serviceDefinition(AUTHORIZATION_SERVICE), authorizationHandlers(deps.gatekeeper, deps.metrics, deps.logger));
  server.addService(serviceDefinition(ACCESS_LOG_SERVICE), accessLogHandlers(deps.reconciler, deps.metrics, deps.logger));
  server.addService(rateLimitServiceDefinition(), rateLimitHandlers(deps.rateLimit, deps.logger));
  const services = ['', AUTHORIZATION_SERVICE, ACCESS_LOG_SERVICE, RATE_LIMIT_SERVICE];
  const health = new HealthImplementation(Object.fromEntries(services.map((name) => [name, 'SERVING'])));
  health.addToServer(server);

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, boundPort) => (err ? reject(err) : resolve(boundPort))),
  );
  return {
    port,
    health,
    shutdown: (graceMs) =>
      new Promise<void>((resolve) => {
        for (const name of services) health.setStatus(name, 'NOT_SERVING');
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}
