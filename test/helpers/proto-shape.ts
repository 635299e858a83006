import protobuf from 'protobufjs';
import { ENVOY_PROTO_DIRS } from '../../src/envoy/protos.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** The bootstrap and every extension an Envoy config of this repository uses (envoy/envoy.yaml and its renderings). */
const ENVOY_CONFIG_PROTOS = [
  'envoy/config/bootstrap/v3/bootstrap.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  'envoy/extensions/filters/http/lua/v3/lua.proto',
  'envoy/extensions/access_loggers/grpc/v3/als.proto',
  'envoy/extensions/filters/http/ratelimit/v3/rate_limit.proto',
];

/** Envoy's protos for checking an Envoy config of this repository (envoy.config.bootstrap.v3.Bootstrap). */
export function loadEnvoyConfigRoot(): protobuf.Root {
  return loadEnvoyRoot(ENVOY_CONFIG_PROTOS);
}

/** Loads Envoy proto files (and their imports) from @grpc/grpc-js-xds with keepCase field names. */
function loadEnvoyRoot(files: string[]): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    for (const dir of ENVOY_PROTO_DIRS) {
      const candidate = join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    return target;
  };
  root.loadSync(files, { keepCase: true });
  root.resolveAll();
  return root;
}

const WELL_KNOWN_SCALARS = new Set([
  'google.protobuf.Duration',
  'google.protobuf.Timestamp',
  'google.protobuf.BoolValue',
  'google.protobuf.UInt32Value',
  'google.protobuf.UInt64Value',
  'google.protobuf.Int32Value',
  'google.protobuf.Int64Value',
  'google.protobuf.DoubleValue',
  'google.protobuf.StringValue',
  'google.protobuf.Struct',
  'google.protobuf.Value',
]);

/**
 * Checks a YAML/JSON config object against a message type in proto3 JSON form (snake_case names):
 * every key must be a field, enums must name a value, Any must carry a resolvable @type. Returns
 * the problems found, as "path: problem".
 */
export function protoShapeProblems(value: unknown, type: protobuf.Type, root: protobuf.Root, path = '$'): string[] {
  if (WELL_KNOWN_SCALARS.has(type.fullName.slice(1))) return [];
  if (type.fullName === '.google.protobuf.Any') {
    const url = (value as Record<string, unknown>)['@type'];
    if (typeof url !== 'string') return [`${path}: Any without @type`];
    const inner = root.lookupType(url.replace(/^type\.googleapis\.com\//, ''));
    const { '@type': _t, ...rest } = value as Record<string, unknown>;
    return protoShapeProblems(rest, inner, root, `${path}<${inner.name}>`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [`${path}: expected a ${type.name} object`];
  const problems: string[] = [];
  for (const [key, child] of Object.entries(value as Record<string, unknown>)) {
    const field = type.fields[key];
    if (!field) {
      problems.push(`${path}.${key}: no such field in ${type.fullName.slice(1)}`);
      continue;
    }
    const items = field.repeated ? (Array.isArray(child) ? child : [Symbol('not a list')]) : [child];
    if (field.map) {
      for (const [k, v] of Object.entries(child as Record<string, unknown>)) problems.push(...fieldProblems(v, field, root, `${path}.${key}[${k}]`));
      continue;
    }
    items.forEach((item, i) => problems.push(...fieldProblems(item, field, root, field.repeated ? `${path}.${key}[${i}]` : `${path}.${key}`)));
  }
  return problems;
}

function fieldProblems(value: unknown, field: protobuf.Field, root: protobuf.Root, path: string): string[] {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) return protoShapeProblems(value, resolved, root, path);
  if (resolved instanceof protobuf.Enum) {
    return typeof value === 'string' && !(value in resolved.values) ? [`${path}: ${value} is not a ${resolved.name} value`] : [];
  }
  if (typeof value === 'symbol') return [`${path}: expected a list`];
  return [];
}
