import * as grpc from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { startTestApp } from './helpers/app.js';
import { startRedisServer } from './helpers/redis-server.js';
import { until } from './helpers/eventually.js';

const config = (failOpen: boolean) => `
defaults: { tokensPerMinute: 1000 }
models: { m1: {} }
identity: { trustUserHeader: true }
failOpen: ${failOpen}
`;
const ask = { path: '/v1/completions', headers: { 'x-user-id': 'u' }, body: { model: 'm1', prompt: 'hi', max_tokens: 5 } };

describe('when Redis goes away', () => {
  it('fails closed by default: a 503 denial with an OpenAI body, /readyz not ready, and recovery when Redis returns', async () => {
    const redis = await startRedisServer();
    const t = await startTestApp({ configYaml: config(false), store: { kind: 'redis', url: redis.url } });
    try {
      expect((await t.envoy.check(ask)).status).toBe(200);
      await redis.stop();
      const res = await t.envoy.check(ask);
      expect(res.status).toBe(503);
      expect(JSON.parse(res.body).error.code).toBe('quota_unavailable');
      expect((await fetch(`${t.http}/readyz`)).status).toBe(503);
      const metrics = await (await fetch(`${t.http}/metrics`)).text();
      expect(metrics).toMatch(/tokenwarden_store_errors_total\{operation="reserve"\} [1-9]/);

      const revived = spawn('redis-server', ['--port', String(redis.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
      try {
        await until(async () => (await fetch(`${t.http}/readyz`)).status === 200, 10_000);
        expect((await t.envoy.check(ask)).status).toBe(200);
      } finally {
        revived.kill('SIGKILL');
      }
    } finally {
      await t.close();
    }
  });

  it('with failOpen fails the gRPC call, so Envoy failure_mode_allow can let traffic through', async () => {
    const redis = await startRedisServer();
    const t = await startTestApp({ configYaml: config(true), store: { kind: 'redis', url: redis.url } });
    try {
      await redis.stop();
      await expect(t.envoy.check(ask)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
      expect((await fetch(`${t.http}/readyz`)).status).toBe(200);
    } finally {
      await t.close();
    }
  });
});
