/**
 * The demo topology on one machine: client → Envoy stand-in (envoy/envoy.yaml, envoy/usage.lua) →
 * model-server stand-in, with tokenwarden (the built dist/main.js, as deployed) answering Checks and
 * reading the access log. Used by `make demo` (demo/main.ts) and the end-to-end test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { startEnvoyStandIn } from './envoy-stand-in.js';
import { startModelServerStandIn } from './model-server-stand-in.js';

export interface DemoPorts {
  /** Envoy's listener: the OpenAI API clients call. 0 picks a free port. */
  readonly envoy: number;
  readonly tokenwardenGrpc: number;
  readonly tokenwardenHttp: number;
  readonly modelServer: number;
}

export const DEFAULT_PORTS: DemoPorts = { envoy: 10000, tokenwardenGrpc: 9001, tokenwardenHttp: 8080, modelServer: 8000 };

export interface DemoStack {
  /** The OpenAI-compatible base URL, through Envoy: http://127.0.0.1:10000/v1 by default. */
  readonly baseUrl: string;
  /** tokenwarden's HTTP API (usage, metrics). */
  readonly tokenwardenUrl: string;
  /** Requests the model-server stand-in is generating for right now. */
  modelServerActive(): number;
  close(): Promise<void>;
}

export async function startDemoStack(options: {
  readonly ports?: Partial<DemoPorts>;
  /** Redis for tokenwarden's counters; the embedded store when absent. */
  readonly redisUrl?: string;
  readonly limitsFile?: string;
  readonly tokensPerSecond?: number;
  /** Share of answers that end before their budget (see the model-server stand-in). */
  readonly naturalStopRate?: number;
  readonly log?: (line: string) => void;
}): Promise<DemoStack> {
  const ports = { ...DEFAULT_PORTS, ...options.ports };
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const modelServer = await startModelServerStandIn({
    port: ports.modelServer,
    log,
    ...(options.tokensPerSecond === undefined ? {} : { tokensPerSecond: options.tokensPerSecond }),
    ...(options.naturalStopRate === undefined ? {} : { naturalStopRate: options.naturalStopRate }),
  });
  let tokenwarden: { process: ChildProcess; grpcPort: number; httpPort: number } | undefined;
  try {
    tokenwarden = await startTokenwarden(ports, options.limitsFile ?? 'demo/limits.yaml', options.redisUrl, log);
    const envoy = await startEnvoyStandIn({
      envoyYaml: 'envoy/envoy.yaml',
      listenPort: ports.envoy,
      clusterAddresses: {
        tokenwarden: `127.0.0.1:${tokenwarden.grpcPort}`,
        tokenwarden_http: `127.0.0.1:${tokenwarden.httpPort}`,
        vllm_llama_3_2_1b: `127.0.0.1:${modelServer.port}`,
      },
    });
    const running = tokenwarden;
    return {
      baseUrl: `http://127.0.0.1:${envoy.port}/v1`,
      tokenwardenUrl: `http://127.0.0.1:${running.httpPort}`,
      modelServerActive: () => modelServer.activeGenerations(),
      async close() {
        await envoy.close();
        await stopProcess(running.process);
        await modelServer.close();
      },
    };
  } catch (err) {
    if (tokenwarden) await stopProcess(tokenwarden.process);
    await modelServer.close();
    throw err;
  }
}

/** tokenwarden as deployed (node dist/main.js), ready once it logs its bound ports and /readyz answers. */
async function startTokenwarden(ports: DemoPorts, limitsFile: string, redisUrl: string | undefined, log: (line: string) => void) {
  const args = ['dist/main.js', '--config', limitsFile, '--grpc-addr', `127.0.0.1:${ports.tokenwardenGrpc}`, '--http-addr', `127.0.0.1:${ports.tokenwardenHttp}`];
  if (redisUrl) args.push('--store', 'redis', '--redis-url', redisUrl);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TOKENWARDEN_LOG_LEVEL: process.env['TOKENWARDEN_LOG_LEVEL'] ?? 'info' } });
  children.add(child);
  child.once('exit', () => children.delete(child));
  // Its last lines are shown when it does not start, whatever the demo's verbosity.
  const recent: string[] = [];
  const keep = (line: string) => {
    log(`tokenwarden ${line}`);
    recent.push(line);
    if (recent.length > 20) recent.shift();
  };
  createInterface({ input: child.stderr! }).on('line', keep);
  try {
    const started = await new Promise<{ grpcPort: number; httpPort: number }>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`tokenwarden exited with code ${code} before it started`)));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        keep(line);
        const ports = /"grpcPort":(\d+),"httpPort":(\d+)/.exec(line);
        if (ports) resolve({ grpcPort: Number(ports[1]), httpPort: Number(ports[2]) });
      });
    });
    // Ready means the tokenizers are loaded and the store answers: Envoy would not send traffic before.
    for (let waited = 0; ; waited += 100) {
      const ready = await fetch(`http://127.0.0.1:${started.httpPort}/readyz`).then((r) => r.ok, () => false);
      if (ready) break;
      if (waited > 60_000) throw new Error(`tokenwarden did not become ready within 60 s${redisUrl ? ` (is Redis at ${redisUrl} running?)` : ''}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return { process: child, ...started };
  } catch (err) {
    await stopProcess(child);
    throw new Error(`${(err as Error).message}\ntokenwarden's last log lines:\n${recent.join('\n')}`);
  }
}

/** tokenwarden processes still running: killed if this process exits without closing the stack. */
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}
