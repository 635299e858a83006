#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { EnvoyCheckClient } from '../envoy/check-client.js';

const USAGE = `tokenwarden-check — send ext_authz Checks the way Envoy would, and print the answers

  --addr HOST:PORT     tokenwarden's gRPC address        [127.0.0.1:9001]
  --key KEY            API key sent as Authorization: Bearer
  --model NAME         model in the chat-completions body [llama-3.2-1b]
  --prompt TEXT        user message                        [Hello!]
  --max-tokens N       max_tokens in the body (omit for the configured default)
  --repeat N           send N Checks one after another     [1]`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      addr: { type: 'string', default: '127.0.0.1:9001' },
      key: { type: 'string' },
      model: { type: 'string', default: 'llama-3.2-1b' },
      prompt: { type: 'string', default: 'Hello!' },
      'max-tokens': { type: 'string' },
      repeat: { type: 'string', default: '1' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const maxTokens = values['max-tokens'] === undefined ? undefined : Number(values['max-tokens']);
  const client = new EnvoyCheckClient(values.addr);
  try {
    for (let i = 1; i <= Number(values.repeat); i++) {
      const outcome = await client.check({
        headers: values.key ? { authorization: `Bearer ${values.key}` } : {},
        body: {
          model: values.model,
          messages: [{ role: 'user', content: values.prompt }],
          ...(maxTokens === undefined ? {} : { max_tokens: maxTokens }),
        },
      });
      console.log(`#${i} ${outcome.allowed ? 'ALLOWED' : 'DENIED'} HTTP ${outcome.status}`);
      for (const [name, value] of Object.entries(outcome.headers)) console.log(`   ${name}: ${value}`);
      if (Object.keys(outcome.metadata).length) console.log(`   metadata: ${JSON.stringify(outcome.metadata)}`);
      if (outcome.body) console.log(`   body: ${outcome.body}`);
    }
    return 0;
  } finally {
    client.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`tokenwarden-check: ${err.message}`);
    process.exit(1);
  },
);
