import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll } from 'vitest';
import { rateLimitServiceDefinition } from '../../src/ratelimit/grpc.js';

/** A client of tokenwarden's ShouldRateLimit over real gRPC, with the wire proto Envoy's newer versions use. */
export type Entry = [string, string];
export interface Descriptor {
  entries: Entry[];
  /** The descriptor's own hits_addend (field 3). */
  hits?: number;
  limit?: { requests_per_unit: number; unit: number };
}
export interface Answer {
  overall_code: string;
  statuses: Array<{ code: string; current_limit?: { requests_per_unit: number; unit: string; name: string }; limit_remaining: number; duration_until_reset?: { seconds: string } }>;
  response_headers_to_add: Array<{ key: string; value: string }>;
}
export type RlsClient = { ShouldRateLimit(request: object, callback: (err: grpc.ServiceError | null, answer?: Answer) => void): void; close(): void };

const Client = grpc.makeGenericClientConstructor(rateLimitServiceDefinition(), 'RateLimitService');

export function rlsClient(port: number): RlsClient {
  return new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as RlsClient;
}

/** The RateLimitRequest Envoy would send. */
export function rlsRequest(domain: string, descriptors: readonly Descriptor[], hitsAddend = 0): object {
  return {
    domain,
    hits_addend: hitsAddend,
    descriptors: descriptors.map((d) => ({
      entries: d.entries.map(([key, value]) => ({ key, value })),
      ...(d.hits === undefined ? {} : { hits_addend: { value: String(d.hits) } }),
      ...(d.limit ? { limit: d.limit } : {}),
    })),
  };
}

export function askRls(client: RlsClient, domain: string, descriptors: readonly Descriptor[], hitsAddend = 0): Promise<Answer> {
  return new Promise((resolve, reject) =>
    client.ShouldRateLimit(rlsRequest(domain, descriptors, hitsAddend), (err, answer) => (err ? reject(err) : resolve(answer!))),
  );
}

/** Rule files in a fresh directory (names may contain subdirectories), removed after the test file. */
export function rulesDirForThisFile(): (files: Record<string, string>) => string {
  const dirs: string[] = [];
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
  return (files) => {
    const dir = mkdtempSync(join(tmpdir(), 'tw-rls-'));
    dirs.push(dir);
    for (const [name, text] of Object.entries(files)) {
      mkdirSync(join(dir, name, '..'), { recursive: true });
      writeFileSync(join(dir, name), text);
    }
    return dir;
  };
}
