/**
 * `make demo-load`: the four demo users send mixed streaming and non-streaming requests through the
 * running demo for a minute (DEMO_LOAD_SECONDS), while a table shows each user's tokens used and
 * remaining this minute and their 429s — quotas filling and refilling. DEMO_BASE_URL points it at
 * another stack (default http://127.0.0.1:10000/v1).
 */
import OpenAI from 'openai';

const BASE_URL = process.env['DEMO_BASE_URL'] ?? 'http://127.0.0.1:10000/v1';
const SECONDS = Number(process.env['DEMO_LOAD_SECONDS'] ?? 60);
const USERS = [
  { name: 'alice', key: 'tw-demo-alice', workers: 2 },
  { name: 'bob', key: 'tw-demo-bob', workers: 2 },
  { name: 'carol', key: 'tw-demo-carol', workers: 2 },
  { name: 'dave', key: 'tw-demo-dave', workers: 1 },
] as const;
const PROMPTS = [
  'Explain what a token quota is in two sentences.',
  '서울에서 부산까지 KTX로 얼마나 걸리나요?',
  'Write a haiku about GPUs sharing work fairly.',
  '한국어 토큰화가 영어보다 어려운 이유를 설명해 주세요.',
  'List three things an on-call engineer checks first when requests are denied.',
];

interface Tally {
  ok: number;
  denied: number;
  failed: number;
  tokens: number;
  window?: { used: number; limit: number | null; remaining: number | null };
}
const tallies = new Map<string, Tally>(USERS.map((u) => [u.name, { ok: 0, denied: 0, failed: 0, tokens: 0 }]));

async function worker(user: (typeof USERS)[number], until: number, seed: number): Promise<void> {
  // No retries: a 429 is what the table counts.
  const client = new OpenAI({ baseURL: BASE_URL, apiKey: user.key, maxRetries: 0 });
  const tally = tallies.get(user.name)!;
  for (let i = seed; Date.now() < until; i++) {
    const model = i % 3 === 0 ? 'korean-llama' : 'llama-3.2-1b';
    const messages = [{ role: 'user' as const, content: PROMPTS[i % PROMPTS.length]! }];
    const max_tokens = 20 + ((i * 37) % 120);
    try {
      if (i % 2 === 0) {
        const stream = await client.chat.completions.create({ model, messages, max_tokens, stream: true, stream_options: { include_usage: true } });
        for await (const chunk of stream) if (chunk.usage) tally.tokens += chunk.usage.total_tokens;
      } else {
        const reply = await client.chat.completions.create({ model, messages, max_tokens });
        tally.tokens += reply.usage?.total_tokens ?? 0;
      }
      tally.ok++;
    } catch (err) {
      if (err instanceof OpenAI.RateLimitError) {
        tally.denied++;
        const retryAfter = Number(err.headers?.get('retry-after') ?? 1);
        await new Promise((r) => setTimeout(r, Math.min(retryAfter, 5) * 1000));
      } else {
        tally.failed++;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }
}

/** Each user's tokens-per-minute window, summed over the models, from GET /v1/usage with their own key. */
async function refreshWindows(): Promise<void> {
  await Promise.all(
    USERS.map(async (user) => {
      const response = await fetch(`${BASE_URL}/usage`, { headers: { authorization: `Bearer ${user.key}` } }).catch(() => undefined);
      if (!response?.ok) return;
      const usage = (await response.json()) as { models: Array<{ windows: Array<{ window: string; used: number; limit: number | null; remaining: number | null }> }> };
      const minute = usage.models.flatMap((m) => m.windows.filter((w) => w.window === 'tokensPerMinute'));
      tallies.get(user.name)!.window = {
        used: minute.reduce((sum, w) => sum + w.used, 0),
        limit: minute[0]?.limit ?? null,
        remaining: minute.length === 0 || minute.some((w) => w.remaining === null) ? null : Math.min(...minute.map((w) => w.remaining!)),
      };
    }),
  );
}

function table(secondsLeft: number): string {
  const pad = (v: unknown, n: number) => String(v).padStart(n);
  const rows = USERS.map((u) => {
    const t = tallies.get(u.name)!;
    const w = t.window;
    return `${u.name.padEnd(7)}${pad(t.ok, 6)}${pad(t.denied, 7)}${pad(t.failed, 7)}${pad(t.tokens, 9)}${pad(w?.used ?? '-', 10)}${pad(w?.limit ?? '∞', 8)}${pad(w?.remaining ?? '∞', 11)}`;
  });
  return [
    `tokenwarden demo load — ${BASE_URL} — ${secondsLeft}s left`,
    '',
    `user       ok    429  error   tokens  used/min   limit  remaining`,
    ...rows,
    '',
    'ok/429/error: requests so far; tokens: usage the model reported; used/min: the tokensPerMinute windows (/v1/usage) summed over both models; limit and remaining: per model, the tighter',
  ].join('\n');
}

const until = Date.now() + SECONDS * 1000;
const workers = USERS.flatMap((user) => Array.from({ length: user.workers }, (_, i) => worker(user, until, i)));
const tty = process.stdout.isTTY;
const timer = setInterval(() => {
  void refreshWindows().then(() => {
    const left = Math.max(0, Math.round((until - Date.now()) / 1000));
    process.stdout.write(tty ? `\x1b[H\x1b[2J${table(left)}\n` : left % 10 === 0 ? `${table(left)}\n\n` : '');
  });
}, 1000);
await Promise.all(workers);
clearInterval(timer);
await refreshWindows();
process.stdout.write(`${table(0)}\n`);
