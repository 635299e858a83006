import { hash } from 'node:crypto';
import { UnsupportedTokenizerError } from './errors.js';
import { GenerationalCache } from './generational-cache.js';
import { jsRegexFromPattern } from './pattern.js';

/** The subset of a Hugging Face tokenizer.json that the fast path understands. */
export interface TokenizerJson {
  added_tokens?: Array<{ id: number; content: string; special?: boolean; lstrip?: boolean; rstrip?: boolean; single_word?: boolean; normalized?: boolean }>;
  normalizer?: unknown;
  pre_tokenizer?: unknown;
  post_processor?: unknown;
  model?: {
    type?: string;
    vocab?: Record<string, number>;
    merges?: Array<string | [string, string]>;
    ignore_merges?: boolean;
    byte_fallback?: boolean;
    dropout?: number | null;
    continuing_subword_prefix?: string | null;
    end_of_word_suffix?: string | null;
  };
}

/** How many distinct pre-tokens each cache generation holds (two generations: at most twice this). */
const CACHE_GENERATION_SIZE = 100_000;
/** How many segment counts each generation holds (a key is a 27-character digest). */
const SEGMENT_CACHE_GENERATION_SIZE = 50_000;
/** Shorter segments are counted directly: hashing them would cost as much. */
const MIN_CACHED_SEGMENT_LENGTH = 64;
/** Longer pre-tokens are not cached: they rarely repeat and would pin memory. */
const MAX_CACHED_PIECE_LENGTH = 64;
/** Above this many bytes a pre-token is merged through a queue of candidates instead of rescanning all pairs. */
const SMALL_PIECE_BYTES = 48;

/**
 * A byte-level BPE tokenizer (GPT-2 / Llama 3 family) built from tokenizer.json, producing the same
 * ids as Hugging Face tokenizers, several times faster in JS: pre-tokens are looked up whole first
 * (ignore_merges), merges are a numeric pair → rank table, and results are cached per pre-token.
 * Merging is O(n log n) in the pre-token's length, so one megabyte-long run of a character is cheap.
 * Throws UnsupportedTokenizerError for any tokenizer.json feature it does not implement, so the
 * caller can fall back to the general implementation rather than count wrongly.
 */
export class ByteLevelBpe {
  private readonly byteIds = new Int32Array(256);
  private readonly merges: MergeTable;
  /** Whole pre-tokens (as text, not byte-level strings) that are single vocabulary entries. */
  private readonly wholeTokens = new Map<string, number>();
  private readonly ignoreMerges: boolean;
  private readonly splitter: RegExp;
  private readonly addedTokens: RegExp | undefined;
  private readonly addedIds = new Map<string, number>();
  private readonly prefixIds: number[];
  private readonly suffixIds: number[];
  /** Token counts of pre-tokens seen before (short ones only: they repeat; long ones rarely do). */
  private readonly pieceCounts = new GenerationalCache<number>(CACHE_GENERATION_SIZE);
  /** Token counts of whole segments (text between added tokens) by SHA-1. */
  private readonly segmentCounts = new GenerationalCache<number>(SEGMENT_CACHE_GENERATION_SIZE);
  private readonly encoder = new TextEncoder();

  constructor(json: TokenizerJson) {
    const model = json.model;
    if (model?.type !== 'BPE' || !model.vocab || !model.merges) throw new UnsupportedTokenizerError('model is not BPE');
    if (model.byte_fallback || model.dropout || model.continuing_subword_prefix || model.end_of_word_suffix) {
      throw new UnsupportedTokenizerError('BPE options beyond byte-level BPE');
    }
    if (json.normalizer) throw new UnsupportedTokenizerError('normalizer');
    this.splitter = byteLevelSplitter(json.pre_tokenizer);
    this.ignoreMerges = model.ignore_merges === true;

    const vocab = model.vocab;
    const unicodeOfByte = byteToUnicode();
    const byteOfUnicode = new Map<string, number>();
    unicodeOfByte.forEach((ch, byte) => byteOfUnicode.set(ch, byte));
    for (let byte = 0; byte < 256; byte++) {
      const id = vocab[unicodeOfByte[byte]!];
      if (id === undefined) throw new UnsupportedTokenizerError(`no token for byte ${byte}`);
      this.byteIds[byte] = id;
    }
    // ignoreBOM keeps a leading U+FEFF: some vocabulary entries start with one.
    const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
    for (const [token, id] of Object.entries(vocab)) {
      const bytes = [...token].map((ch) => byteOfUnicode.get(ch));
      if (bytes.some((b) => b === undefined)) continue;
      try {
        this.wholeTokens.set(decoder.decode(Uint8Array.from(bytes as number[])), id);
      } catch {
        // not valid UTF-8 on its own, so never a whole pre-token
      }
    }
    this.merges = new MergeTable(model.merges.length);
    model.merges.forEach((merge, rank) => {
      const [left, right] = typeof merge === 'string' ? splitMerge(merge) : merge;
      const leftId = vocab[left];
      const rightId = vocab[right];
      const mergedId = vocab[left + right];
      if (leftId === undefined || rightId === undefined || mergedId === undefined) {
        throw new UnsupportedTokenizerError(`merge ${rank} names tokens missing from the vocabulary`);
      }
      this.merges.add(leftId, rightId, rank, mergedId);
    });

    const added = json.added_tokens ?? [];
    for (const token of added) {
      if (token.lstrip || token.rstrip || token.single_word) throw new UnsupportedTokenizerError('added tokens with strip options');
      this.addedIds.set(token.content, token.id);
    }
    this.addedTokens = added.length
      ? new RegExp(
          [...added]
            .sort((a, b) => b.content.length - a.content.length)
            .map((t) => t.content.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
            .join('|'),
          'g',
        )
      : undefined;
    [this.prefixIds, this.suffixIds] = singleTemplate(json.post_processor, this.addedIds, vocab);
  }

  /** Token ids for `text`; with addSpecialTokens, the post-processor's single-sequence template too. */
  encode(text: string, addSpecialTokens: boolean): number[] {
    const ids: number[] = addSpecialTokens ? [...this.prefixIds] : [];
    this.forEachSegment(text, (segment, addedId) => {
      if (segment !== undefined) {
        const splitter = this.splitter;
        splitter.lastIndex = 0;
        for (let match = splitter.exec(segment); match !== null; match = splitter.exec(segment)) ids.push(...this.pieceIds(match[0]));
      } else {
        ids.push(addedId!);
      }
    });
    if (addSpecialTokens) ids.push(...this.suffixIds);
    return ids;
  }

  /**
   * The length `encode` would return, without building the id array. The text between two added
   * (special) tokens is tokenized independently of everything around it — added tokens are split out
   * before pre-tokenization — so the count of a segment seen before (an earlier turn of a
   * conversation, a system prompt) is looked up by its SHA-1 instead of being tokenized again.
   */
  count(text: string, addSpecialTokens: boolean): number {
    let total = addSpecialTokens ? this.prefixIds.length + this.suffixIds.length : 0;
    this.forEachSegment(text, (segment) => {
      total += segment === undefined ? 1 : this.segmentCount(segment);
    });
    return total;
  }

  /** Visits the text between added tokens (a segment) and each added token (segment undefined, its id). */
  private forEachSegment(text: string, visit: (segment: string | undefined, addedId?: number) => void): void {
    if (this.addedTokens === undefined) return visit(text);
    const added = this.addedTokens;
    added.lastIndex = 0;
    let start = 0;
    for (let match = added.exec(text); match !== null; match = added.exec(text)) {
      if (match.index > start) visit(text.slice(start, match.index));
      visit(undefined, this.addedIds.get(match[0])!);
      start = match.index + match[0].length;
    }
    if (start < text.length) visit(start === 0 ? text : text.slice(start));
  }

  private segmentCount(segment: string): number {
    if (segment.length < MIN_CACHED_SEGMENT_LENGTH) return this.countPieces(segment);
    const key = hash('sha1', segment, 'base64');
    let count = this.segmentCounts.get(key);
    if (count === undefined) {
      count = this.countPieces(segment);
      this.segmentCounts.set(key, count);
    }
    return count;
  }

  private countPieces(segment: string): number {
    const splitter = this.splitter;
    splitter.lastIndex = 0;
    let total = 0;
    for (let match = splitter.exec(segment); match !== null; match = splitter.exec(segment)) {
      const piece = match[0];
      let count = this.pieceCounts.get(piece);
      if (count === undefined) {
        count = this.pieceIds(piece).length;
        if (piece.length <= MAX_CACHED_PIECE_LENGTH) this.pieceCounts.set(piece, count);
      }
      total += count;
    }
    return total;
  }

  private pieceIds(piece: string): readonly number[] {
    const whole = this.ignoreMerges ? this.wholeTokens.get(piece) : undefined;
    return whole !== undefined ? [whole] : this.merge(this.encoder.encode(piece));
  }

  private merge(bytes: Uint8Array): number[] {
    if (bytes.length > SMALL_PIECE_BYTES) return this.mergeThroughQueue(bytes);
    return this.mergeByScanning(Array.from(bytes, (b) => this.byteIds[b]!));
  }

  /** Repeatedly merge the lowest-ranked adjacent pair (leftmost on ties), rescanning: fine for short pieces. */
  private mergeByScanning(ids: number[]): number[] {
    const merges = this.merges;
    for (;;) {
      let best = -1;
      let at = -1;
      for (let i = 0; i + 1 < ids.length; i++) {
        const slot = merges.find(ids[i]!, ids[i + 1]!);
        if (slot >= 0 && (best < 0 || merges.rankAt[slot]! < merges.rankAt[best]!)) {
          best = slot;
          at = i;
        }
      }
      if (at < 0) return ids;
      ids.splice(at, 2, merges.mergedAt[best]!);
    }
  }

  /**
   * The same merge order for long pieces: the symbols form a linked list over byte positions, and
   * each position's current pair waits in a MergeQueue. A queued candidate is stale once the pair at
   * its position has changed; since one rank names one pair, comparing ranks tells.
   */
  private mergeThroughQueue(bytes: Uint8Array): number[] {
    const merges = this.merges;
    const n = bytes.length;
    const ids = new Int32Array(n);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    // The rank of the pair starting at each position (-1: none, or merged into its left neighbour) and its merged id.
    const pairRank = new Int32Array(n);
    const pairMerged = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      ids[i] = this.byteIds[bytes[i]!]!;
      next[i] = i + 1;
      prev[i] = i - 1;
    }
    const queue = new MergeQueue();
    const updatePair = (i: number) => {
      const slot = next[i]! < n ? merges.find(ids[i]!, ids[next[i]!]!) : -1;
      if (slot < 0) {
        pairRank[i] = -1;
        return;
      }
      pairRank[i] = merges.rankAt[slot]!;
      pairMerged[i] = merges.mergedAt[slot]!;
      queue.push(pairRank[i]!, i);
    };
    for (let i = 0; i < n; i++) updatePair(i);
    for (let rank = queue.lowestRank(); rank >= 0; rank = queue.lowestRank()) {
      const i = queue.takeLeftmost();
      if (pairRank[i] !== rank) continue;
      const j = next[i]!;
      ids[i] = pairMerged[i]!;
      pairRank[j] = -1;
      next[i] = next[j]!;
      if (next[j]! < n) prev[next[j]!] = i;
      if (prev[i]! >= 0) updatePair(prev[i]!);
      updatePair(i);
    }
    const out: number[] = [];
    for (let i = 0; i < n; i = next[i]!) out.push(ids[i]!);
    return out;
  }
}

/**
 * The merge rules as an open-addressing hash table in typed arrays: (left id, right id) → rank and
 * merged id. A Map keyed by left * 2^17 + right would box every key and value (they exceed small
 * integers) and take more than twice the memory.
 */
class MergeTable {
  private readonly lefts: Int32Array;
  private readonly rights: Int32Array;
  readonly rankAt: Int32Array;
  readonly mergedAt: Int32Array;
  private readonly bits: number;

  constructor(rules: number) {
    this.bits = Math.max(4, Math.ceil(Math.log2(rules / 0.6)));
    const size = 1 << this.bits;
    this.lefts = new Int32Array(size).fill(-1);
    this.rights = new Int32Array(size);
    this.rankAt = new Int32Array(size);
    this.mergedAt = new Int32Array(size);
  }

  /** Adds a rule unless the pair already has one: the first (lowest-ranked) rule for a pair wins. */
  add(left: number, right: number, rank: number, merged: number): void {
    const slot = this.slotOf(left, right);
    if (this.lefts[slot] !== -1) return;
    this.lefts[slot] = left;
    this.rights[slot] = right;
    this.rankAt[slot] = rank;
    this.mergedAt[slot] = merged;
  }

  /** The slot holding the rule for (left, right), or -1 when the pair does not merge. */
  find(left: number, right: number): number {
    const slot = this.slotOf(left, right);
    return this.lefts[slot] === -1 ? -1 : slot;
  }

  /** Where (left, right) is, or the empty slot where it would go (linear probing). */
  private slotOf(left: number, right: number): number {
    const mask = (1 << this.bits) - 1;
    for (let slot = (Math.imul(left, 0x9e3779b1) ^ Math.imul(right, 0x85ebca77)) >>> (32 - this.bits); ; slot = (slot + 1) & mask) {
      const l = this.lefts[slot]!;
      if (l === -1 || (l === left && this.rights[slot] === right)) return slot;
    }
  }
}

/**
 * Merge candidates in Hugging Face's order: lowest rank first, then leftmost position. Candidates are
 * grouped by rank, and within a rank positions mostly arrive left to right (the first scan, then one
 * merge sweeping along a run), so each rank keeps those in a plain array and only stragglers in a
 * heap: a long run of one character costs array appends instead of millions of heap operations.
 */
class MergeQueue {
  private readonly ranks = new MinHeap();
  private readonly byRank = new Map<number, RankCandidates>();

  push(rank: number, position: number): void {
    const candidates = this.byRank.get(rank);
    if (candidates !== undefined) return candidates.push(position);
    this.byRank.set(rank, new RankCandidates(position));
    this.ranks.push(rank);
  }

  /** The lowest rank with a candidate left, or -1 when there is none. */
  lowestRank(): number {
    return this.ranks.size > 0 ? this.ranks.peek() : -1;
  }

  /** Removes and returns the leftmost candidate of lowestRank(). */
  takeLeftmost(): number {
    const rank = this.ranks.peek();
    const candidates = this.byRank.get(rank)!;
    const position = candidates.takeLeftmost();
    if (candidates.isEmpty()) {
      this.byRank.delete(rank);
      this.ranks.pop();
    }
    return position;
  }
}

/** One rank's candidate positions: those that arrived in order, and a heap for the others. */
class RankCandidates {
  private readonly inOrder: number[];
  private head = 0;
  private tail = 1;
  private stragglers: MinHeap | undefined;

  constructor(first: number) {
    this.inOrder = [first];
  }

  isEmpty(): boolean {
    return this.head === this.tail && (this.stragglers === undefined || this.stragglers.size === 0);
  }

  push(position: number): void {
    if (this.head === this.tail) this.head = this.tail = 0;
    if (this.tail === 0 || position >= this.inOrder[this.tail - 1]!) this.inOrder[this.tail++] = position;
    else (this.stragglers ??= new MinHeap()).push(position);
  }

  takeLeftmost(): number {
    const stragglers = this.stragglers;
    if (stragglers !== undefined && stragglers.size > 0 && (this.head === this.tail || stragglers.peek() < this.inOrder[this.head]!)) {
      return stragglers.pop();
    }
    return this.inOrder[this.head++]!;
  }
}

/** A min-heap of numbers in a growable typed array. */
class MinHeap {
  private items = new Float64Array(16);
  size = 0;

  /** The smallest value; only when size > 0. */
  peek(): number {
    return this.items[0]!;
  }

  push(value: number): void {
    if (this.size === this.items.length) {
      const grown = new Float64Array(this.items.length * 2);
      grown.set(this.items);
      this.items = grown;
    }
    const items = this.items;
    let i = this.size++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent]! <= value) break;
      items[i] = items[parent]!;
      i = parent;
    }
    items[i] = value;
  }

  /** Removes and returns the smallest value; only when size > 0. */
  pop(): number {
    const items = this.items;
    const top = items[0]!;
    const last = items[--this.size]!;
    const size = this.size;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= size) break;
      if (child + 1 < size && items[child + 1]! < items[child]!) child++;
      if (items[child]! >= last) break;
      items[i] = items[child]!;
      i = child;
    }
    items[i] = last;
    return top;
  }
}

function splitMerge(merge: string): [string, string] {
  const space = merge.indexOf(' ', 1);
  if (space < 0) throw new UnsupportedTokenizerError(`malformed merge "${merge}"`);
  return [merge.slice(0, space), merge.slice(space + 1)];
}

/** GPT-2's reversible byte → printable character table. */
function byteToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCharCode(printable.includes(b) ? b : 256 + extra++);
  }
  return table;
}

/** The pre-token splitter of a byte-level tokenizer: Split(regex, Isolated) + ByteLevel, or ByteLevel with its own regex. */
function byteLevelSplitter(preTokenizer: unknown): RegExp {
  const GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
  const p = preTokenizer as { type?: string; pretokenizers?: unknown[]; use_regex?: boolean; add_prefix_space?: boolean } | null;
  if (p?.type === 'ByteLevel' && p.use_regex !== false && !p.add_prefix_space) return jsRegexFromPattern(GPT2_PATTERN);
  if (p?.type === 'Sequence' && p.pretokenizers?.length === 2) {
    const [split, byteLevel] = p.pretokenizers as Array<Record<string, unknown>>;
    const pattern = (split?.['pattern'] as { Regex?: string } | undefined)?.Regex;
    if (
      split?.['type'] === 'Split' &&
      split['behavior'] === 'Isolated' &&
      split['invert'] === false &&
      typeof pattern === 'string' &&
      byteLevel?.['type'] === 'ByteLevel' &&
      byteLevel['use_regex'] === false &&
      !byteLevel['add_prefix_space']
    ) {
      return jsRegexFromPattern(pattern);
    }
  }
  throw new UnsupportedTokenizerError('pre-tokenizer is not byte-level with a split regex');
}

/** Special-token ids the post-processor puts before and after a single sequence. */
function singleTemplate(postProcessor: unknown, addedIds: ReadonlyMap<string, number>, vocab: Record<string, number>): [number[], number[]] {
  const p = postProcessor as { type?: string; processors?: unknown[]; single?: unknown[]; special_tokens?: Record<string, { ids: number[] }> } | null;
  if (!p) return [[], []];
  if (p.type === 'ByteLevel') return [[], []];
  if (p.type === 'Sequence') {
    const templates = (p.processors ?? []).filter((q) => (q as { type?: string }).type !== 'ByteLevel');
    if (templates.length > 1) throw new UnsupportedTokenizerError('more than one post-processor template');
    return singleTemplate(templates[0] ?? null, addedIds, vocab);
  }
  if (p.type !== 'TemplateProcessing' || !p.single) throw new UnsupportedTokenizerError(`post-processor ${p.type}`);
  const prefix: number[] = [];
  const suffix: number[] = [];
  let seenSequence = false;
  for (const piece of p.single as Array<{ SpecialToken?: { id: string }; Sequence?: unknown }>) {
    if (piece.Sequence) {
      seenSequence = true;
      continue;
    }
    const name = piece.SpecialToken?.id;
    const ids = name === undefined ? undefined : (p.special_tokens?.[name]?.ids ?? [addedIds.get(name) ?? vocab[name]]);
    if (!ids || ids.some((id) => id === undefined)) throw new UnsupportedTokenizerError(`template token ${name}`);
    (seenSequence ? suffix : prefix).push(...(ids as number[]));
  }
  return [prefix, suffix];
}
