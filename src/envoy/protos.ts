import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const require = createRequire(import.meta.url);
const xdsDeps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');

/** Envoy's API protos as shipped in @grpc/grpc-js-xds, never copied into this repository. */
export const ENVOY_PROTO_DIRS = ['envoy-api', 'googleapis', 'xds', 'protoc-gen-validate'].map((d) => join(xdsDeps, d));

export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
  includeDirs: ENVOY_PROTO_DIRS,
};

const SERVICE_FILES = [
  'envoy/service/auth/v3/external_auth.proto',
  'envoy/service/ratelimit/v3/rls.proto',
  'envoy/service/accesslog/v3/als.proto',
];

let loaded: grpc.GrpcObject | undefined;

/** The Envoy service definitions (loaded once; parsing the protos takes ~200 ms). */
export function envoyServices(): grpc.GrpcObject {
  loaded ??= grpc.loadPackageDefinition(protoLoader.loadSync(SERVICE_FILES, PROTO_LOADER_OPTIONS));
  return loaded;
}

export function serviceDefinition(path: string): grpc.ServiceDefinition {
  let node: unknown = envoyServices();
  for (const part of path.split('.')) node = (node as Record<string, unknown>)[part];
  const service = (node as { service?: grpc.ServiceDefinition } | undefined)?.service;
  if (!service) throw new Error(`service ${path} not found in Envoy's protos`);
  return service;
}
