import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { Gatekeeper } from '../src/admission/gatekeeper.js';
import { parseLimitsYaml } from '../src/config/load.js';
import { QuotaEngine } from '../src/quota/engine.js';
import { MemoryStore } from '../src/quota/memory-store.js';
import { createLogger } from '../src/telemetry/logger.js';
import { createMetrics } from '../src/telemetry/metrics.js';
import { TokenizerRegistry } from '../src/tokens/registry.js';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { lines, logger: createLogger('debug', stream) };
}

describe('logging', () => {
  it('writes one debug line per decision and never the API key or the body', async () => {
    const { lines, logger } = capture();
    const config = parseLimitsYaml(
      `models: { m1: {} }\napiKeys: [ { sha256: "${'5'.repeat(64)}", user: u } ]\nidentity: { trustUserHeader: true }\ntokenization: { workers: 0 }`,
      'test',
    );
    const store = new MemoryStore();
    const counter = new TokenizerRegistry(config, { logger });
    await counter.settled();
    const gatekeeper = new Gatekeeper({
      config: () => config,
      engine: new QuotaEngine(store, () => config),
      counter,
      metrics: createMetrics(),
      logger,
    });
    const secretPrompt = 'my-very-private-prompt';
    for (const headers of [{ authorization: 'Bearer sk-super-secret-key' }, { 'x-user-id': 'ursula' }]) {
      await gatekeeper.decide({
        method: 'POST',
        path: '/v1/chat/completions',
        headers: new Map(Object.entries(headers)),
        body: JSON.stringify({ model: 'm1', messages: [{ role: 'user', content: secretPrompt }] }),
        bodyTruncated: false,
        filterMetadata: {},
      });
    }
    await store.close();
    await counter.close();
    const decisions = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'check');
    expect(decisions.map((d) => d.decision)).toEqual(['deny', 'allow']);
    expect(decisions[1]).toMatchObject({ user: 'ursula', model: 'm1' });
    const all = lines.join('');
    expect(all).not.toContain('sk-super-secret-key');
    expect(all).not.toContain(secretPrompt);
  });

  it('redacts authorization headers and bodies if a caller ever logs them', () => {
    const { lines, logger } = capture();
    logger.info({ headers: { authorization: 'Bearer abc123' }, body: 'prompt text', apiKey: 'k-1' }, 'oops');
    const entry = JSON.parse(lines[0]!);
    expect(entry.headers.authorization).toBe('[redacted]');
    expect(entry.body).toBe('[redacted]');
    expect(entry.apiKey).toBe('[redacted]');
  });
});
