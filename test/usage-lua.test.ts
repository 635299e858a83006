import { describe, expect, it } from 'vitest';
import { runUsageLua, splitAt } from './helpers/usage-lua.js';
import { jsonCompletion, sseCompletion } from './helpers/vllm-responses.js';

const usage = { prompt_tokens: 42, completion_tokens: 17 };
const expected = { promptTokens: 42, completionTokens: 17 };

describe('envoy/usage.lua under LuaJIT', () => {
  it('reads usage from a non-streamed JSON body', () => {
    expect(runUsageLua([[jsonCompletion('a', 'Hello! 안녕하세요.', usage)]])).toEqual([expected]);
  });

  it('reads the final usage chunk of an SSE stream', () => {
    expect(runUsageLua([[sseCompletion('b', ['Hel', 'lo', '!'], usage)]])).toEqual([expected]);
  });

  it('records nothing for an SSE stream without usage', () => {
    expect(runUsageLua([[sseCompletion('c', ['Hi', ' there'], undefined)]])).toEqual([undefined]);
  });

  it('takes the last cumulative usage with continuous_usage_stats', () => {
    expect(runUsageLua([[sseCompletion('d', ['a', 'b', 'c', 'd'], usage, { continuous: true })]])).toEqual([expected]);
  });

  it('finds usage wherever chunk boundaries fall, including inside a data: line', () => {
    for (const body of [sseCompletion('e', ['x', 'y'], usage), jsonCompletion('f', 'z', usage)]) {
      const bytes = Buffer.from(body);
      const twoWay = Array.from({ length: bytes.length - 1 }, (_, i) => splitAt(bytes, [i + 1]));
      const small = [1, 2, 3, 7, 13].map((size) => splitAt(bytes, Array.from({ length: Math.ceil(bytes.length / size) }, (_, i) => i * size)));
      const results = runUsageLua([...twoWay, ...small]);
      expect(results.every((r) => r?.promptTokens === 42 && r.completionTokens === 17)).toBe(true);
      expect(results).toHaveLength(twoWay.length + small.length);
    }
  });

  it('is not fooled by usage-looking text the model generated', () => {
    const hostile = 'Sure: {"usage": {"prompt_tokens": 0, "completion_tokens": 0}} and ,"usage":{"prompt_tokens":1,"completion_tokens":1}';
    expect(runUsageLua([[jsonCompletion('g', hostile, usage)], [sseCompletion('h', [hostile, hostile], usage)]])).toEqual([expected, expected]);
    expect(runUsageLua([[sseCompletion('i', [hostile], undefined)]])).toEqual([undefined]);
  });

  it('records nothing for error bodies, mid-stream errors and malformed or truncated usage', () => {
    const vllmError = JSON.stringify({ object: 'error', message: "This model's maximum context length is 8192 tokens.", type: 'BadRequestError', param: null, code: 400 });
    const midStreamError = 'data: {"id":"x","choices":[{"delta":{"content":"a"}}]}\n\ndata: {"error": {"object": "error", "message": "boom", "code": 500}}\n\ndata: [DONE]\n\n';
    const truncated = jsonCompletion('j', 'ok', usage).slice(0, -60);
    const floats = '{"usage":{"prompt_tokens":4.5,"completion_tokens":2}}';
    const missing = '{"usage":{"prompt_tokens":4}}';
    const nullUsage = '{"choices":[],"usage":null}';
    expect(runUsageLua([[vllmError], [midStreamError], [truncated], [floats], [missing], [nullUsage], []])).toEqual(Array(7).fill(undefined));
  });

  it('handles huge bodies with bounded memory and refuses an oversized usage object', () => {
    const longText = '토큰 '.repeat(700_000); // ~5 MB
    const body = jsonCompletion('k', longText, usage);
    const chunks = splitAt(body, Array.from({ length: 400 }, (_, i) => i * 16_384));
    const padded = `{"usage":{"prompt_tokens":1,"completion_tokens":2,"padding":"${'x'.repeat(4000)}"}}`;
    expect(runUsageLua([chunks, [padded]])).toEqual([expected, undefined]);
  });
});
