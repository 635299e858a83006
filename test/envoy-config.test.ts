import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadEnvoyConfigRoot, protoShapeProblems } from './helpers/proto-shape.js';

const root = loadEnvoyConfigRoot();

describe('envoy/envoy.yaml', () => {
  const config = parse(readFileSync('envoy/envoy.yaml', 'utf8'));

  it("matches Envoy's Bootstrap proto field for field", () => {
    expect(protoShapeProblems(config, root.lookupType('envoy.config.bootstrap.v3.Bootstrap'), root)).toEqual([]);
  });

  it('catches a misspelt field (the check can fail)', () => {
    const broken = structuredClone(config);
    broken.static_resources.clusters[0].conect_timeout = '1s';
    expect(protoShapeProblems(broken, root.lookupType('envoy.config.bootstrap.v3.Bootstrap'), root)).toEqual([
      '$.static_resources.clusters[0].conect_timeout: no such field in envoy.config.cluster.v3.Cluster',
    ]);
  });

  it('reads usage with usage.lua after ext_authz and sends the gRPC access log to tokenwarden over V3', () => {
    const hcm = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
    expect(hcm.http_filters.map((f: { name: string }) => f.name)).toEqual(['envoy.filters.http.ext_authz', 'envoy.filters.http.lua', 'envoy.filters.http.router']);
    const als = hcm.access_log[0].typed_config.common_config;
    expect(als.transport_api_version).toBe('V3');
    expect(als.grpc_service.envoy_grpc.cluster_name).toBe('tokenwarden');
  });

  it('sends bodies to ext_authz over V3 with a timeout above the 200 ms default', () => {
    const hcm = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
    const authz = hcm.http_filters.find((f: { name: string }) => f.name === 'envoy.filters.http.ext_authz').typed_config;
    expect(authz.transport_api_version).toBe('V3');
    expect(authz.with_request_body.max_request_bytes).toBeGreaterThan(0);
    expect(parseFloat(authz.grpc_service.timeout)).toBeGreaterThanOrEqual(0.5);
    const cluster = config.static_resources.clusters.find((c: { name: string }) => c.name === 'tokenwarden');
    expect(cluster.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'].explicit_http_config).toHaveProperty(
      'http2_protocol_options',
    );
  });

  it('routes GET /v1/usage and /v1/tokenize to tokenwarden\'s HTTP port without ext_authz, everything else to vLLM', () => {
    const hcm = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
    const routes = hcm.route_config.virtual_hosts[0].routes as Array<{ match: Record<string, unknown>; route: { cluster: string }; typed_per_filter_config?: Record<string, { disabled?: boolean }> }>;
    const usage = routes.find((r) => r.match['path_separated_prefix'] === '/v1/usage')!;
    expect(hcm.normalize_path).toBe(true);
    expect(hcm.merge_slashes).toBe(true);
    expect(usage.route.cluster).toBe('tokenwarden_http');
    expect(usage.match['headers']).toEqual([{ name: ':method', string_match: { exact: 'GET' } }]);
    expect(usage.typed_per_filter_config!['envoy.filters.http.ext_authz']!.disabled).toBe(true);
    expect(routes.find((r) => r.match['path'] === '/v1/tokenize')!.route.cluster).toBe('tokenwarden_http');
    expect(routes.at(-1)!.match).toEqual({ prefix: '/' });
    const http = config.static_resources.clusters.find((c: { name: string }) => c.name === 'tokenwarden_http');
    expect(http.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value).toBe(8080);
  });
});
