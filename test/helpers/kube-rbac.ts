import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

// tokenwarden's Role against what src/kube/*.ts asks of the API server. Used for every Role we ship:
// deploy/kustomize (test/kustomize.test.ts), the Helm chart's topologies and deploy/tokenwarden.yaml
// (test/review-12.test.ts, test/helm-chart.test.ts, test/deploy.test.ts).
//
// A permission is group/resource:verb. Some calls touch one object whose name the deployment knows, and
// the Role then names it (resourceNames), so that the account reads or writes nothing else:
//   - the limits ConfigMap: list and watch carry fieldSelector metadata.name=<--configmap>, which the API
//     server authorizes as a request for that name (request info takes the name from the selector);
//   - the leader Lease: get and update (read, replace) by name.
// `create` can never be restricted by resourceNames (the object has no name the authorizer can see
// before it exists), so the Lease's create needs a rule of its own without them. Secrets (label
// selected) and TokenQuotas (all of the namespace) are listed whole.

/** A rule of a Role. */
export interface RoleRule {
  apiGroups?: string[];
  resources?: string[];
  verbs?: string[];
  resourceNames?: string[];
}

/** The objects the code touches by name; the deployment decides the ConfigMap's (--configmap). */
export interface KubeNames {
  configMap: string;
  lease: string;
}
type NameOf = keyof KubeNames;

/** One Role permission: group, resource (with subresource) and verb. */
export const permission = (group: string, resource: string, verb: string) => `${group || 'core'}/${resource}:${verb}`;

/** What each client call asks for, and the one object it touches (undefined: any, or a new one). */
type Use = { permission: string; name?: NameOf };
const CONFIGMAP_BY_NAME = /fieldSelector = `metadata\.name=\$\{options\.configMapName\}`/;

/**
 * Each client call of src/kube names its permission here; a call this table does not know fails the
 * check (add it here, and to the Roles).
 */
const KUBE_CALLS: Record<string, (text: string) => Use[]> = {
  listNamespacedConfigMap: (text) => [{ permission: permission('', 'configmaps', 'list'), ...(CONFIGMAP_BY_NAME.test(text) && /listNamespacedConfigMap\(\{[^}]*fieldSelector/.test(text) ? { name: 'configMap' as const } : {}) }],
  listNamespacedSecret: () => [{ permission: permission('', 'secrets', 'list') }],
  listNamespacedCustomObject: (text) => (text.includes('TOKEN_QUOTA_PLURAL') ? [{ permission: permission('tokenwarden.dev', 'tokenquotas', 'list') }] : [{ permission: 'an unknown custom object list' }]),
  patchNamespacedCustomObjectStatus: (text) => (text.includes('TOKEN_QUOTA_PLURAL') ? [{ permission: permission('tokenwarden.dev', 'tokenquotas/status', 'patch') }] : [{ permission: 'an unknown status patch' }]),
  readNamespacedLease: () => [{ permission: permission('coordination.k8s.io', 'leases', 'get'), name: 'lease' }],
  createNamespacedLease: () => [{ permission: permission('coordination.k8s.io', 'leases', 'create') }],
  replaceNamespacedLease: () => [{ permission: permission('coordination.k8s.io', 'leases', 'update'), name: 'lease' }],
};
/** A ListWatch watches what it lists (the informer's path names the resource). */
const WATCHES: Record<string, string> = {
  configmaps: permission('', 'configmaps', 'watch'),
  secrets: permission('', 'secrets', 'watch'),
  TOKEN_QUOTA_PLURAL: permission('tokenwarden.dev', 'tokenquotas', 'watch'),
};

/** The Lease name src/kube uses (the controller's default; main.ts passes none). */
export function codeLeaseName(): string {
  const found = /leaseName: options\.leaseName \?\? '([^']+)'/.exec(readFileSync('src/kube/controller.ts', 'utf8'));
  if (!found) throw new Error('src/kube/controller.ts: no default lease name found');
  return found[1]!;
}

/** What src/kube/*.ts uses: permission → the object's name when it touches exactly one. */
export function kubeCodeUses(names: KubeNames): { needed: Map<string, string | undefined>; unknown: string[] } {
  const needed = new Map<string, string | undefined>();
  const unknown: string[] = [];
  const add = (use: Use) => needed.set(use.permission, use.name ? names[use.name] : undefined);
  for (const file of readdirSync('src/kube').filter((f) => f.endsWith('.ts'))) {
    const text = readFileSync(join('src/kube', file), 'utf8');
    for (const [, call] of text.matchAll(/\.((?:list|read|create|replace|patch|delete|deleteCollection)Namespaced\w*)\(/g)) {
      const known = KUBE_CALLS[call!];
      if (!known) unknown.push(`${file}: ${call}`);
      else known(text).forEach(add);
    }
    // The watch carries the list's field selector when the ListWatch is given it (its 6th argument).
    for (const [, path, rest] of text.matchAll(/new ListWatch\(\s*`([^`]*)`([^\n]*)/g)) {
      const key = Object.keys(WATCHES).find((k) => path!.endsWith(`/${k}`) || path!.endsWith(`\${${k}}`));
      if (!key) unknown.push(`${file}: a watch on ${path}`);
      else add({ permission: WATCHES[key]!, ...(key === 'configmaps' && /fieldSelector\)/.test(rest!) && CONFIGMAP_BY_NAME.test(text) ? { name: 'configMap' as const } : {}) });
    }
  }
  return { needed, unknown };
}

/** Every permission a Role grants → the names it is restricted to (undefined: every object). */
function grants(rules: RoleRule[]): Map<string, Array<string[] | undefined>> {
  const granted = new Map<string, Array<string[] | undefined>>();
  for (const rule of rules) {
    for (const group of rule.apiGroups ?? []) {
      for (const resource of rule.resources ?? []) {
        for (const verb of rule.verbs ?? []) {
          const p = permission(group, resource, verb);
          granted.set(p, [...(granted.get(p) ?? []), rule.resourceNames && rule.resourceNames.length > 0 ? rule.resourceNames : undefined]);
        }
      }
    }
  }
  return granted;
}

/**
 * A Role against src/kube/*.ts: everything the code uses is granted (else a 403 at start), nothing
 * else is, and what the code uses on one named object is granted on that object only.
 */
export function rbacProblems(rules: RoleRule[], names: KubeNames): string[] {
  const { needed, unknown } = kubeCodeUses(names);
  const granted = grants(rules);
  const problems = unknown.map((u) => `src/kube calls ${u}, which this check does not know`);
  for (const [p, name] of needed) {
    const scopes = granted.get(p);
    if (!scopes) {
      problems.push(`the Role does not grant ${p}, which src/kube uses`);
      continue;
    }
    if (name === undefined) {
      if (!scopes.includes(undefined)) problems.push(`the Role grants ${p} only on ${scopes.flat().join(', ')}, but src/kube needs it unrestricted${p.endsWith(':create') ? ' (create cannot be restricted by resourceNames)' : ''}`);
      continue;
    }
    if (scopes.includes(undefined)) problems.push(`the Role grants ${p} on every object; src/kube uses it on ${name} only (resourceNames)`);
    const others = [...new Set(scopes.flatMap((s) => s ?? []))].filter((n) => n !== name);
    if (others.length > 0) problems.push(`the Role grants ${p} on ${others.join(', ')}, which src/kube does not use`);
    if (!scopes.some((s) => s?.includes(name)) && !scopes.includes(undefined)) problems.push(`the Role does not grant ${p} on ${name}, which src/kube uses`);
  }
  for (const p of granted.keys()) if (!needed.has(p)) problems.push(`the Role grants ${p}, which src/kube does not use`);
  return problems;
}
