import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { PodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import ts from 'typescript';

// The Prometheus Operator's objects (PodMonitor, ServiceMonitor, PrometheusRule) checked against the
// operator's CRD schemas, as packaged by the devDependency @kubernetes-models/prometheus-operator (the
// kubernetes-models family the other manifest tests use for Kubernetes' own kinds). Two checks:
//   1. the package's validator, generated from the CRDs' openAPIV3Schema: types, required fields, enums,
//      patterns (a `for: 5` or `for: 5 minutes` in a rule, a missing podMetricsEndpoints, ...);
//   2. unknown fields, which that validator lets through like the CRD's structural schema would
//      (the API server prunes them, or refuses them under strict field validation): every key is looked
//      up in the package's declared type for the kind (its .d.ts, generated from the same schema), read
//      with the TypeScript compiler.
// Used by test/kustomize.test.ts (the overlays), test/helm-topologies.test.ts (every topology) and
// test/alerts.test.ts (every file under deploy/).

type Obj = Record<string, unknown>;

export const OPERATOR_GROUP = 'monitoring.coreos.com';

const MODELS: Record<string, { model: new (data: any) => { validate(): void }; file: string; type: string }> = {
  'monitoring.coreos.com/v1/PodMonitor': { model: PodMonitor, file: 'PodMonitor.d.ts', type: 'IPodMonitor' },
  'monitoring.coreos.com/v1/ServiceMonitor': { model: ServiceMonitor, file: 'ServiceMonitor.d.ts', type: 'IServiceMonitor' },
  'monitoring.coreos.com/v1/PrometheusRule': { model: PrometheusRule, file: 'PrometheusRule.d.ts', type: 'IPrometheusRule' },
};

/** True for any object of the Prometheus Operator's API group (checked or not). */
export const isOperatorObject = (doc: Obj): boolean => typeof doc['apiVersion'] === 'string' && (doc['apiVersion'] as string).startsWith(`${OPERATOR_GROUP}/`);

const require = createRequire(import.meta.url);
const typesDir = join(dirname(require.resolve('@kubernetes-models/prometheus-operator/package.json')), 'monitoring.coreos.com', 'v1');

let declared: { checker: ts.TypeChecker; types: Map<string, ts.Type> } | undefined;
/** The declared type of each kind, read once from the package's .d.ts files (about a second). */
function declaredTypes(): { checker: ts.TypeChecker; types: Map<string, ts.Type> } {
  if (declared) return declared;
  const files = Object.values(MODELS).map((m) => join(typesDir, m.file));
  const program = ts.createProgram(files, { noEmit: true, skipLibCheck: true, strict: true, types: [], module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext });
  const checker = program.getTypeChecker();
  const types = new Map<string, ts.Type>();
  for (const [key, m] of Object.entries(MODELS)) {
    const source = program.getSourceFile(join(typesDir, m.file));
    const node = source?.statements.find((s): s is ts.InterfaceDeclaration => ts.isInterfaceDeclaration(s) && s.name.text === m.type);
    if (!node) throw new Error(`${m.file}: no interface ${m.type}`);
    types.set(key, checker.getTypeAtLocation(node));
  }
  declared = { checker, types };
  return declared;
}

/** The keys of `value` that `type` does not declare, recursively ("path: no such field"). */
function unknownFields(checker: ts.TypeChecker, value: unknown, type: ts.Type, path: string): string[] {
  const t = checker.getNonNullableType(type);
  if (Array.isArray(value)) {
    if (!checker.isArrayType(t)) return [];
    const element = checker.getTypeArguments(t as ts.TypeReference)[0]!;
    return value.flatMap((v, i) => unknownFields(checker, v, element, `${path}[${i}]`));
  }
  if (!value || typeof value !== 'object') return [];
  // A union of object shapes is not used by these kinds; a primitive or `any` says nothing about keys.
  if (t.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown) || !(t.flags & ts.TypeFlags.Object)) return [];
  const index = checker.getIndexInfoOfType(t, ts.IndexKind.String);
  return Object.entries(value as Obj).flatMap(([key, child]) => {
    const property = checker.getPropertyOfType(t, key);
    if (property) return unknownFields(checker, child, checker.getTypeOfSymbol(property), `${path}.${key}`);
    if (index) return unknownFields(checker, child, index.type, `${path}.${key}`);
    return [`${path}.${key}: no such field`];
  });
}

/**
 * What the API server (with the operator's CRDs installed) would refuse or drop in one
 * monitoring.coreos.com object, as "Kind/name...: problem"; [] when it is valid.
 */
export function operatorSchemaProblems(doc: Obj): string[] {
  const metadata = doc['metadata'] as Obj | undefined;
  const where = `${String(doc['kind'])}/${String(metadata?.['name'])}`;
  const key = `${String(doc['apiVersion'])}/${String(doc['kind'])}`;
  const entry = MODELS[key];
  if (!entry) return [`${where}: no schema to check ${key} against`];
  const problems: string[] = [];
  try {
    new entry.model(doc).validate();
  } catch (err) {
    problems.push(`${where}: ${(err as Error).message}`);
  }
  const { checker, types } = declaredTypes();
  return [...problems, ...unknownFields(checker, doc, types.get(key)!, where)];
}
