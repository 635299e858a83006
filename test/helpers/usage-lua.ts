import { spawnSync } from 'node:child_process';

export interface LuaUsage {
  readonly promptTokens: number;
  readonly completionTokens: number;
}

/**
 * Runs envoy/usage.lua under the real LuaJIT, through a stand-in for Envoy's Lua API, over each
 * response given as the chunks Envoy would deliver. Returns what it put in dynamic metadata.
 */
export function runUsageLua(responses: ReadonlyArray<ReadonlyArray<string | Buffer>>): Array<LuaUsage | undefined> {
  const frames: Buffer[] = [];
  for (const chunks of responses) {
    frames.push(Buffer.from('response\n'));
    for (const chunk of chunks) {
      const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, 'utf8');
      frames.push(Buffer.from(`${bytes.length}\n`), bytes);
    }
  }
  const run = spawnSync('luajit', ['test/lua/envoy-lua-stand-in.lua', 'envoy/usage.lua'], {
    input: Buffer.concat(frames),
    maxBuffer: 64 * 1024 * 1024,
  });
  if (run.status !== 0) throw new Error(`luajit failed: ${run.stderr.toString()}`);
  return run.stdout
    .toString()
    .trim()
    .split('\n')
    .map((line) => {
      if (line === 'none') return undefined;
      const values = Object.fromEntries(line.split(' ').map((pair) => pair.split('=') as [string, string]));
      return {
        promptTokens: Number(values['tokenwarden.usage.prompt_tokens']),
        completionTokens: Number(values['tokenwarden.usage.completion_tokens']),
      };
    });
}

/** Splits text into chunks at the given byte offsets. */
export function splitAt(text: string | Buffer, offsets: readonly number[]): Buffer[] {
  const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text, 'utf8');
  const cuts = [0, ...offsets.filter((o) => o > 0 && o < bytes.length), bytes.length];
  return cuts.slice(1).map((end, i) => bytes.subarray(cuts[i]!, end));
}
