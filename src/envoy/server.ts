import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Reconciler } from '../accounting/reconciler.js';
import type { Gatekeeper } from '../admission/gatekeeper.js';
import { accessLogHandlers } from './accesslog.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { authorizationHandlers } from './authz.js';
import { serviceDefinition } from './protos.js';

export const AUTHORIZATION_SERVICE = 'envoy.service.auth.v3.Authorization';
export const ACCESS_LOG_SERVICE = 'envoy.service.accesslog.v3.AccessLogService';

export interface GrpcServer {
  /** The bound port (useful when started on port 0). */
  readonly port: number;
  readonly health: HealthImplementation;
  /** Stops accepting calls, lets running ones finish for up to `graceMs`, then forces the rest closed. */
  shutdown(graceMs: number): Promise<void>;
}

/** One gRPC server: Envoy's Authorization and AccessLogService, plus grpc.health.v1.Health. */
export async function startGrpcServer(
  address: string,
  deps: { gatekeeper: Gatekeeper; reconciler: Reconciler; metrics: Metrics; logger: Logger },
): Promise<GrpcServer> {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': 32 * 1024 * 1024,
    'grpc.keepalive_permit_without_calls': 1,
  });
  server.addService(serviceDefinition(AUTHORIZATION_SERVICE), authorizationHandlers(deps.gatekeeper, deps.metrics, deps.logger));
  server.addService(serviceDefinition(ACCESS_LOG_SERVICE), accessLogHandlers(deps.reconciler, deps.metrics, deps.logger));
  const health = new HealthImplementation({ '': 'SERVING', [AUTHORIZATION_SERVICE]: 'SERVING', [ACCESS_LOG_SERVICE]: 'SERVING' });
  health.addToServer(server);

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, boundPort) => (err ? reject(err) : resolve(boundPort))),
  );
  return {
    port,
    health,
    shutdown: (graceMs) =>
      new Promise<void>((resolve) => {
        health.setStatus('', 'NOT_SERVING');
        health.setStatus(AUTHORIZATION_SERVICE, 'NOT_SERVING');
        health.setStatus(ACCESS_LOG_SERVICE, 'NOT_SERVING');
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
