import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';
import { describe, expect, it } from 'vitest';
import { startTestApp } from './helpers/app.js';

describe('grpc.health.v1.Health', () => {
  it('reports SERVING for the server and the Authorization service', async () => {
    const t = await startTestApp({ configYaml: 'models: { m: {} }', store: { kind: 'memory' } });
    const Health = (grpc.loadPackageDefinition(protoLoader.loadSync(protoPath, { enums: String })) as any).grpc.health.v1.Health;
    const client = new Health(`127.0.0.1:${t.app.grpcPort}`, grpc.credentials.createInsecure());
    try {
      for (const service of ['', 'envoy.service.auth.v3.Authorization']) {
        const res = await new Promise<{ status: string }>((resolve, reject) =>
          client.Check({ service }, (err: Error | null, r: { status: string }) => (err ? reject(err) : resolve(r))),
        );
        expect(res.status).toBe('SERVING');
      }
    } finally {
      client.close();
      await t.close();
    }
  });
});
