import { readFileSync } from 'node:fs';
import { evaluate } from '@marcbachmann/cel-js';
import { Ajv } from 'ajv';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseTokenQuotaSpec } from '../src/kube/token-quota.js';
import { LIMIT_NAMES, NESTED_TOKEN_LIMITS } from '../src/limit-kinds.js';

const crd = parse(readFileSync('deploy/crds/tokenquotas.tokenwarden.dev.yaml', 'utf8'));
const version = crd.spec.versions[0];
const specSchema = version.schema.openAPIV3Schema.properties.spec;

/** What the API server would say of a spec: the structural schema, then every CEL rule on its node. */
function apiServerAccepts(spec: unknown): boolean {
  const ajv = new Ajv({ strict: false, allErrors: true });
  if (!ajv.validate(specSchema, spec)) return false;
  const rules = (node: any, value: any): boolean => {
    if (value === undefined) return true;
    for (const v of node['x-kubernetes-validations'] ?? []) if (evaluate(v.rule, { self: value }) !== true) return false;
    return Object.entries(node.properties ?? {}).every(([key, child]) => rules(child, value?.[key]));
  };
  return rules(specSchema, spec);
}

describe('deploy/crds/tokenquotas.tokenwarden.dev.yaml', () => {
  it('is a valid CustomResourceDefinition', () => {
    expect(() => new CustomResourceDefinition(crd).validate()).not.toThrow();
    expect(crd.spec).toMatchObject({ group: 'tokenwarden.dev', scope: 'Namespaced', names: { kind: 'TokenQuota', shortNames: ['tq'] } });
    expect(version).toMatchObject({ name: 'v1alpha1', served: true, storage: true, subresources: { status: {} } });
    expect(version.additionalPrinterColumns.map((c: { name: string }) => c.name)).toEqual(
      expect.arrayContaining(['Users', 'Models', 'Tokens/min', 'Tokens/day', 'Ready', 'Age']),
    );
  });

  it('offers exactly the limit kinds of src/limit-kinds.ts, with a rule for every nested pair of token windows', () => {
    const limits = specSchema.properties.limits;
    expect(Object.keys(limits.properties).sort()).toEqual([...LIMIT_NAMES].sort());
    const rules = limits['x-kubernetes-validations'].map((v: { rule: string }) => v.rule);
    for (const [inner, outer] of NESTED_TOKEN_LIMITS) expect(rules).toContain(`!has(self.${inner}) || !has(self.${outer}) || self.${inner} <= self.${outer}`);
    expect(rules).toHaveLength(NESTED_TOKEN_LIMITS.length);
  });

  it('is the file the Helm chart installs', () => {
    expect(readFileSync('charts/tokenwarden/crds/tokenquotas.tokenwarden.dev.yaml', 'utf8')).toBe(readFileSync('deploy/crds/tokenquotas.tokenwarden.dev.yaml', 'utf8'));
  });

  const example = parse(readFileSync('deploy/examples/tokenquota.yaml', 'utf8')).spec;
  const cases: Array<[string, unknown, boolean]> = [
    ['the shipped example', example, true],
    ['a group on every model', { subjects: { groups: ['team-a'] }, models: ['*'], limits: { requestsPerMinute: 10 } }, true],
    ['no subject', { subjects: {}, models: ['m'], limits: { tokensPerDay: 1 } }, false],
    ['empty subject lists', { subjects: { users: [], groups: [] }, models: ['m'], limits: { tokensPerDay: 1 } }, false],
    ['no limit', { subjects: { users: ['a'] }, models: ['m'], limits: {} }, false],
    ['a negative limit', { subjects: { users: ['a'] }, models: ['m'], limits: { tokensPerDay: -1 } }, false],
    ['a fractional limit', { subjects: { users: ['a'] }, models: ['m'], limits: { tokensPerDay: 1.5 } }, false],
    ['no models', { subjects: { users: ['a'] }, models: [], limits: { tokensPerDay: 1 } }, false],
    ['"*" with other models', { subjects: { users: ['a'] }, models: ['*', 'm'], limits: { tokensPerDay: 1 } }, false],
    ['minute above hour', { subjects: { users: ['a'] }, models: ['m'], limits: { tokensPerMinute: 5, tokensPerHour: 4 } }, false],
    ['hour above day', { subjects: { users: ['a'] }, models: ['m'], limits: { tokensPerHour: 5, tokensPerDay: 4 } }, false],
    ['minute above day', { subjects: { users: ['a'] }, models: ['m'], limits: { tokensPerMinute: 5, tokensPerDay: 4 } }, false],
    ['an empty user name', { subjects: { users: [''] }, models: ['m'], limits: { tokensPerDay: 1 } }, false],
    ['a user named __proto__', { subjects: { users: ['a', '__proto__'] }, models: ['m'], limits: { tokensPerDay: 1 } }, false],
    ['a group named constructor', { subjects: { groups: ['constructor'] }, models: ['m'], limits: { tokensPerDay: 1 } }, false],
    ['a model named prototype', { subjects: { users: ['a'] }, models: ['prototype'], limits: { tokensPerDay: 1 } }, false],
    ['day above month', { subjects: { users: ['a'] }, models: ['m'], limits: { tokensPerDay: 5, tokensPerMonth: 4 } }, false],
    ['minute above month', { subjects: { users: ['a'] }, models: ['m'], limits: { tokensPerMinute: 5, tokensPerMonth: 4 } }, false],
    ['a monthly quota in shadow mode', { subjects: { users: ['a'] }, models: ['m'], limits: { tokensPerMonth: 4 }, shadow: true }, true],
    ['shadow that is not a boolean', { subjects: { users: ['a'] }, models: ['m'], limits: { tokensPerMonth: 4 }, shadow: 'yes' }, false],
    ['names Object.prototype merely inherits', { subjects: { users: ['toString'], groups: ['hasOwnProperty'] }, models: ['valueOf'], limits: { tokensPerDay: 1 } }, true],
  ];
  it.each(cases)('agrees with the controller on %s', (_name, spec, valid) => {
    expect(apiServerAccepts(spec)).toBe(valid);
    expect('spec' in parseTokenQuotaSpec(spec)).toBe(valid);
  });
});
