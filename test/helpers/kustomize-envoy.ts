import { isMap, parseDocument, type Document, type YAMLMap, type YAMLSeq } from 'yaml';

/**
 * Renders envoy/envoy.yaml (the one source of Envoy's configuration) for a Kubernetes topology. The
 * results are deploy/kustomize/overlays/<topology>/envoy.yaml, which kustomize puts into the Envoy
 * ConfigMap; test/kustomize.test.ts fails when a committed copy differs from this rendering
 * (`npx vitest run test/kustomize.test.ts -u` rewrites them).
 *
 * Only addresses and the per-model routing change; listener, filters, access log and routes to
 * tokenwarden stay exactly as in the reference:
 * - both: tokenwarden runs in Envoy's pod, so clusters tokenwarden (gRPC) and tokenwarden_http are
 *   STATIC on 127.0.0.1 (same ports);
 * - sidecar: the one vLLM is the pod's own: cluster vllm_llama_3_2_1b becomes vllm_local, STATIC on
 *   127.0.0.1 (same port), and the catch-all route goes there;
 * - gateway: vllm_llama_3_2_1b stays (vllm-llama-3-2-1b:8000, a headless Service); each further model
 *   gets a copy of that cluster on its own Service and a copy of the virtual host matching its client
 *   Service's host names, whose catch-all route goes to that cluster.
 * - with `rateLimit` (overlays/<topology>-ratelimit, the chart's rateLimit.enabled): Envoy's ratelimit
 *   filter (RATE_LIMIT_FILTER) right after ext_authz, calling tokenwarden's rate-limit service on the
 *   gRPC cluster ext_authz uses, and on every virtual host's catch-all route the actions
 *   (RATE_LIMIT_ACTIONS) that send the user and model ext_authz put into the dynamic metadata. The
 *   routes to tokenwarden's HTTP port get none: the filter makes no call there.
 */
export type Topology = 'sidecar' | 'gateway';

/**
 * The rate-limit domain of the filter, and of the sample rules (deploy/kustomize/components/ratelimit/
 * ratelimit.yaml, the chart's rateLimit.rules): tokenwarden's rate-limit service answers by domain.
 */
export const RATE_LIMIT_DOMAIN = 'llm';

/**
 * Envoy's ratelimit filter, as README ("Rate-limit service") configures it: failure_mode_deny (a
 * failed call is refused, not let through uncounted: 503, as ext_authz's) and the filter's own timeout
 * (Envoy's default is 20 ms).
 */
export const RATE_LIMIT_FILTER = {
  name: 'envoy.filters.http.ratelimit',
  typed_config: {
    '@type': 'type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit',
    domain: RATE_LIMIT_DOMAIN,
    timeout: '0.25s',
    failure_mode_deny: true,
    // As ext_authz's status_on_error: tokenwarden unreachable is a 503 whichever filter notices (Envoy's default here is 500).
    status_on_error: { code: 'ServiceUnavailable' },
    rate_limit_service: {
      transport_api_version: 'V3',
      grpc_service: { envoy_grpc: { cluster_name: 'tokenwarden' } },
    },
  },
};

/** One descriptor per request: [user, model], both from ext_authz's dynamic metadata (tokenwarden's Check answer). */
export const RATE_LIMIT_ACTIONS = [
  {
    actions: ['user', 'model'].map((key) => ({
      metadata: { descriptor_key: key, metadata_key: { key: 'envoy.filters.http.ext_authz', path: [{ key }] }, source: 'DYNAMIC' },
    })),
  },
];

export interface RenderOptions {
  /** Add Envoy's ratelimit filter against tokenwarden's rate-limit service. */
  rateLimit?: boolean;
}

export const LOOPBACK = '127.0.0.1';
const TOKENWARDEN_CLUSTERS = ['tokenwarden', 'tokenwarden_http'];
const REFERENCE_VLLM_CLUSTER = 'vllm_llama_3_2_1b';
const REFERENCE_VIRTUAL_HOST = 'models';
export const SIDECAR_VLLM_CLUSTER = 'vllm_local';

/** Models the gateway routes by Host besides the reference's default (llama-3.2-1b, virtual host "*"). */
export const GATEWAY_EXTRA_MODELS = [{ model: 'korean-llama', cluster: 'vllm_korean_llama', vllmService: 'vllm-korean-llama', clientService: 'korean-llama' }] as const;

/** The host names a client Service is reached by (short, namespaced, FQDN; with or without a port). */
export function virtualHostDomains(service: string): string[] {
  return [service, `${service}:*`, `${service}.*`];
}

export function renderEnvoyConfig(reference: string, topology: Topology, options: RenderOptions = {}): string {
  const doc = parseDocument(reference);
  const clusters = doc.getIn(['static_resources', 'clusters']) as YAMLSeq<YAMLMap>;
  const cluster = (name: string) => {
    const found = clusters.items.find((c) => c.get('name') === name);
    if (!found) throw new Error(`envoy/envoy.yaml has no cluster ${name}`);
    return found;
  };
  const virtualHosts = doc.getIn(['static_resources', 'listeners', 0, 'filter_chains', 0, 'filters', 0, 'typed_config', 'route_config', 'virtual_hosts']) as YAMLSeq<YAMLMap>;
  const models = virtualHosts.items.find((v) => v.get('name') === REFERENCE_VIRTUAL_HOST);
  if (!models) throw new Error(`envoy/envoy.yaml has no virtual host ${REFERENCE_VIRTUAL_HOST}`);

  for (const name of TOKENWARDEN_CLUSTERS) pointAt(cluster(name), LOOPBACK, 'STATIC');
  // Before the gateway copies the virtual host, so that every copy limits the same way.
  if (options.rateLimit) addRateLimit(doc, models);

  if (topology === 'sidecar') {
    const vllm = cluster(REFERENCE_VLLM_CLUSTER);
    rename(vllm, SIDECAR_VLLM_CLUSTER);
    pointAt(vllm, LOOPBACK, 'STATIC');
    setCatchAllCluster(models, SIDECAR_VLLM_CLUSTER);
  } else {
    const template = cluster(REFERENCE_VLLM_CLUSTER);
    for (const extra of GATEWAY_EXTRA_MODELS) {
      const copy = template.clone() as YAMLMap;
      rename(copy, extra.cluster);
      pointAt(copy, extra.vllmService);
      clusters.items.splice(clusters.items.indexOf(template) + 1, 0, copy);

      const host = models.clone() as YAMLMap;
      host.set('name', extra.clientService);
      const domains = doc.createNode(virtualHostDomains(extra.clientService), { flow: true });
      host.set('domains', domains);
      setCatchAllCluster(host, extra.cluster);
      virtualHosts.items.splice(virtualHosts.items.indexOf(models), 0, host);
    }
  }

  doc.commentBefore = [
    ` GENERATED from envoy/envoy.yaml for the ${topology} topology${options.rateLimit ? ' with the ratelimit filter' : ''} by test/helpers/kustomize-envoy.ts:`,
    ' do not edit; change envoy/envoy.yaml and run `npx vitest run test/kustomize.test.ts -u`.',
    ...(topology === 'sidecar'
      ? [' Differences: tokenwarden and tokenwarden_http are STATIC on 127.0.0.1 (tokenwarden is in this pod);', ` vllm_llama_3_2_1b is ${SIDECAR_VLLM_CLUSTER}, STATIC on 127.0.0.1 (this pod's vLLM), the catch-all route's cluster.`]
      : [
          ' Differences: tokenwarden and tokenwarden_http are STATIC on 127.0.0.1 (tokenwarden is in this pod);',
          ...GATEWAY_EXTRA_MODELS.map((m) => ` cluster ${m.cluster} (${m.vllmService}:8000) and virtual host ${m.clientService} (its Service's host names) for ${m.model}.`),
        ]),
    ...(options.rateLimit
      ? [
          ` Rate limits: the filter ${RATE_LIMIT_FILTER.name} after ext_authz (domain ${RATE_LIMIT_DOMAIN}, tokenwarden's gRPC cluster), and rate_limits`,
          ' sending [user, model] from ext_authz\'s metadata on the catch-all routes (deploy/kustomize/README.md, "Rate limits").',
        ]
      : []),
  ].join('\n');
  return doc.toString({ lineWidth: 0 });
}

function addRateLimit(doc: Document, models: YAMLMap): void {
  const filters = doc.getIn(['static_resources', 'listeners', 0, 'filter_chains', 0, 'filters', 0, 'typed_config', 'http_filters']) as YAMLSeq<YAMLMap>;
  const authz = filters.items.findIndex((f) => f.get('name') === 'envoy.filters.http.ext_authz');
  if (authz < 0) throw new Error('envoy/envoy.yaml has no ext_authz filter');
  const filter = doc.createNode(RATE_LIMIT_FILTER) as YAMLMap;
  filter.commentBefore =
    " Requests ext_authz admitted, counted by tokenwarden's rate-limit service against the rules of\n" +
    ' --ratelimit-config (envoyproxy/ratelimit format); over a limit: 429 from Envoy itself.';
  filters.items.splice(authz + 1, 0, filter);
  const route = (models.get('routes') as YAMLSeq<YAMLMap>).items.at(-1)!.get('route') as YAMLMap;
  route.set('rate_limits', doc.createNode(RATE_LIMIT_ACTIONS));
}

function rename(cluster: YAMLMap, name: string): void {
  cluster.set('name', name);
  (cluster.get('load_assignment') as YAMLMap).set('cluster_name', name);
}

function pointAt(cluster: YAMLMap, address: string, type?: 'STATIC'): void {
  if (type) cluster.set('type', type);
  const endpoints = (cluster.get('load_assignment') as YAMLMap).get('endpoints') as YAMLSeq<YAMLMap>;
  for (const group of endpoints.items) {
    for (const lb of (group.get('lb_endpoints') as YAMLSeq<YAMLMap>).items) {
      (lb.getIn(['endpoint', 'address', 'socket_address']) as YAMLMap).set('address', address);
    }
  }
}

/** The last route of a virtual host is the catch-all ({ prefix: "/" }) to vLLM. */
function setCatchAllCluster(virtualHost: YAMLMap, cluster: string): void {
  const routes = virtualHost.get('routes') as YAMLSeq<YAMLMap>;
  const last = routes.items.at(-1)!;
  const match = last.get('match') as YAMLMap;
  if (!isMap(match) || match.get('prefix') !== '/' || match.items.length !== 1) throw new Error('the last route is not the catch-all { prefix: "/" }');
  (last.get('route') as YAMLMap).set('cluster', cluster);
}
