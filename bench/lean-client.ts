/**
 * A lean HTTP/2 gRPC client for the Check benchmarks, run as its own process: it sends pre-encoded
 * gRPC frames (CheckRequests built before the clock starts), round-robin over the bodies given, and
 * reports throughput and latency percentiles as JSON on stdout.
 *   closed loop:  {"mode":"closed","concurrency":C,"requests":N}
 *   open loop:    {"mode":"open","rate":R,"seconds":S}     (latency measured from each request's due time)
 * argv: port, bodies file (length-prefixed frames), the JSON plan.
 */
import { connect, constants } from 'node:http2';
import { readFileSync } from 'node:fs';

const [port, bodiesFile, planText] = process.argv.slice(2) as [string, string, string];
const plan = JSON.parse(planText) as { mode: 'closed'; concurrency: number; requests: number } | { mode: 'open'; rate: number; seconds: number };
const raw = readFileSync(bodiesFile);
const bodies: Buffer[] = [];
for (let at = 0; at < raw.length; ) {
  const length = raw.readUInt32BE(at);
  bodies.push(raw.subarray(at + 4, at + 4 + length));
  at += 4 + length;
}

const session = connect(`http://127.0.0.1:${port}`);
session.on('error', (err) => {
  console.error(err);
  process.exit(1);
});
const HEADERS = {
  [constants.HTTP2_HEADER_METHOD]: 'POST',
  [constants.HTTP2_HEADER_PATH]: '/envoy.service.auth.v3.Authorization/Check',
  'content-type': 'application/grpc',
  te: 'trailers',
};
let next = 0;
let failures = 0;

/** One Check; resolves with its grpc-status. */
function send(): Promise<void> {
  const body = bodies[next++ % bodies.length]!;
  return new Promise((resolve) => {
    const stream = session.request(HEADERS, { endStream: false });
    let status: string | undefined;
    stream.on('response', (headers) => (status = headers['grpc-status'] as string | undefined ?? status));
    stream.on('trailers', (trailers) => (status = trailers['grpc-status'] as string | undefined));
    stream.on('data', () => {});
    stream.on('close', () => {
      if (status !== '0') failures++;
      resolve();
    });
    stream.end(body);
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function main(): Promise<void> {
  for (let i = 0; i < 200; i++) await send(); // warm-up: JIT, connections, caches of the server under test
  failures = 0;
  const latencies: number[] = [];
  const start = performance.now();
  if (plan.mode === 'closed') {
    let remaining = plan.requests;
    const worker = async () => {
      while (remaining-- > 0) {
        const t0 = performance.now();
        await send();
        latencies.push(performance.now() - t0);
      }
    };
    await Promise.all(Array.from({ length: plan.concurrency }, worker));
  } else {
    const total = Math.round(plan.rate * plan.seconds);
    const interval = 1000 / plan.rate;
    const inFlight: Array<Promise<void>> = [];
    for (let i = 0; i < total; i++) {
      const due = start + i * interval;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      inFlight.push(send().then(() => void latencies.push(performance.now() - due)));
    }
    await Promise.all(inFlight);
  }
  const seconds = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  console.log(
    JSON.stringify({ requests: latencies.length, failures, perSecond: latencies.length / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99) }),
  );
  session.close();
}

void main();
