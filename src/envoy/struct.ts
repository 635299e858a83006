/**
 * google.protobuf.Struct as proto-loader hands it over and expects it. protobufjs predefines Struct
 * and Value with camelCase fields (stringValue, numberValue, ...) even under keepCase: true; a
 * snake_case object would be sent empty.
 */
export interface ProtoValue {
  nullValue?: unknown;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: ProtoStruct;
  listValue?: { values?: ProtoValue[] };
  kind?: string;
}
export interface ProtoStruct {
  fields?: Record<string, ProtoValue>;
}

export type Scalar = string | number | boolean;

/** A flat Struct of scalars (what Envoy dynamic metadata needs here). */
export function toStruct(values: Readonly<Record<string, Scalar>>): ProtoStruct {
  const fields: Record<string, ProtoValue> = {};
  for (const [key, value] of Object.entries(values)) {
    fields[key] =
      typeof value === 'string' ? { stringValue: value } : typeof value === 'number' ? { numberValue: value } : { boolValue: value };
  }
  return { fields };
}

export function fromStruct(struct: ProtoStruct | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(struct?.fields ?? {})) out[key] = fromValue(value);
  return out;
}

function fromValue(value: ProtoValue): unknown {
  if (value.structValue !== undefined) return fromStruct(value.structValue);
  if (value.listValue !== undefined) return (value.listValue.values ?? []).map(fromValue);
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.numberValue !== undefined) return value.numberValue;
  if (value.boolValue !== undefined) return value.boolValue;
  return null;
}
