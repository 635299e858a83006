/**
 * `make demo`: the whole path on this machine (see demo/stack.ts), with what a newcomer needs to try
 * it printed. Ports move with DEMO_ENVOY_PORT, DEMO_TOKENWARDEN_GRPC_PORT, DEMO_TOKENWARDEN_HTTP_PORT
 * and DEMO_MODEL_SERVER_PORT; REDIS_URL=redis://... puts the counters in Redis. Ctrl-C stops it all.
 */
import { DEFAULT_PORTS, startDemoStack, type DemoPorts, type DemoStack } from './stack.js';

const env = process.env;
const port = (name: string, fallback: number) => (env[name] === undefined ? fallback : Number(env[name]));
const ports: DemoPorts = {
  envoy: port('DEMO_ENVOY_PORT', DEFAULT_PORTS.envoy),
  tokenwardenGrpc: port('DEMO_TOKENWARDEN_GRPC_PORT', DEFAULT_PORTS.tokenwardenGrpc),
  tokenwardenHttp: port('DEMO_TOKENWARDEN_HTTP_PORT', DEFAULT_PORTS.tokenwardenHttp),
  modelServer: port('DEMO_MODEL_SERVER_PORT', DEFAULT_PORTS.modelServer),
};

// Installed before anything starts: a stop during start-up still stops what has started.
let stack: DemoStack | undefined;
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  process.stdout.write('\nstopping…\n');
  (stack?.close() ?? Promise.resolve()).then(
    () => process.exit(0),
    (err: Error) => {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    },
  );
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

const quiet = (line: string) => {
  // Components log one line per request; keep the terminal for the instructions unless asked.
  if (env['DEMO_VERBOSE'] === '1') process.stderr.write(`${line}\n`);
};
try {
  stack = await startDemoStack({ ports, ...(env['REDIS_URL'] ? { redisUrl: env['REDIS_URL'] } : {}), log: quiet });
} catch (err) {
  process.stderr.write(`the demo did not start: ${(err as Error).message}\n`);
  process.exit(1);
}
const base = stack.baseUrl;
const loadHint = ports.envoy === DEFAULT_PORTS.envoy ? 'make demo-load' : `DEMO_BASE_URL=${base} make demo-load`;
process.stdout.write(`
tokenwarden demo — running on this machine (stand-ins for Envoy and vLLM; tokenwarden is the real build)

  OpenAI API (through the Envoy stand-in):  ${base}
  tokenwarden HTTP (usage, metrics):        ${stack.tokenwardenUrl}
  counters:                                 ${env['REDIS_URL'] ? `Redis at ${env['REDIS_URL']}` : 'embedded store (REDIS_URL=redis://... for Redis)'}
  models:                                   llama-3.2-1b, korean-llama
  API keys:  tw-demo-alice (defaults)  tw-demo-bob (4000 tokens/min)  tw-demo-carol (8 requests/min, 1 at a time)
             tw-demo-dave (8000 tokens/min, 2000 tried in shadow mode)      admin token: tw-demo-admin

1. A chat completion:
   curl -s ${base}/chat/completions -H 'authorization: Bearer tw-demo-alice' -H 'content-type: application/json' \\
     -d '{"model":"llama-3.2-1b","messages":[{"role":"user","content":"Hello! 안녕하세요?"}],"max_tokens":40}'

2. Streaming, with the usage chunk at the end:
   curl -sN ${base}/chat/completions -H 'authorization: Bearer tw-demo-bob' -H 'content-type: application/json' \\
     -d '{"model":"korean-llama","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"서울 날씨 어때?"}],"max_tokens":60}'

3. The official openai package (save as demo.mjs in this checkout, which has it installed, and run node demo.mjs):
   import OpenAI from 'openai';
   const client = new OpenAI({ baseURL: '${base}', apiKey: 'tw-demo-carol' });
   const reply = await client.chat.completions.create({ model: 'llama-3.2-1b', messages: [{ role: 'user', content: 'Hi!' }], max_tokens: 30 });
   console.log(reply.choices[0].message.content, reply.usage);

Your own usage:  curl -s ${base}/usage -H 'authorization: Bearer tw-demo-bob'
Who used most this month:  curl -s '${stack.tokenwardenUrl}/v1/reports/top?period=month' -H 'authorization: Bearer tw-demo-admin'
Why is carol denied:       curl -s '${stack.tokenwardenUrl}/v1/reports/user?user=carol' -H 'authorization: Bearer tw-demo-admin'
The usage page:            ${stack.tokenwardenUrl}/ui (log in with the admin token tw-demo-admin)
Watch quotas fill: ${loadHint} (in another terminal).  Ctrl-C stops everything.
`);

