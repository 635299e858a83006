import { hash } from 'node:crypto';
import { CodeUnitBuffer } from './code-units.js';
import { UnsupportedTokenizerError } from './errors.js';
import { GenerationalCache } from './generational-cache.js';
import { GPT2_PATTERN, preTokenizerFor, type PreTokenizer } from './pre-tokenizer.js';
import { GenerationalSubstringCache, hashOfRange, SubstringTable, type SubstringTableData } from './substring-table.js';

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
/** The code units of the pre-tokens each cache generation holds: 8 per pre-token on average. */
const CACHE_GENERATION_KEY_UNITS = 8 * CACHE_GENERATION_SIZE;
/** How many segment counts each generation holds (a key is a 43-character digest). */
const SEGMENT_CACHE_GENERATION_SIZE = 50_000;
/** Shorter segments are counted directly: hashing them would cost as much. */
const MIN_CACHED_SEGMENT_LENGTH = 64;
/** Longer pre-tokens are not cached: they rarely repeat and would pin memory. */
const MAX_CACHED_PIECE_LENGTH = 64;
/** Above this many bytes a pre-token is merged through a queue of candidates instead of scanning all pairs. */
const SMALL_PIECE_BYTES = 48;

/**
 * A byte-level BPE tokenizer (GPT-2 / Llama 3 family) built from tokenizer.json, producing the same
 * ids as Hugging Face tokenizers, several times faster in JS: the known split patterns are scanned
 * by hand (pre-tokenizer.ts) over the text's code units, pre-tokens are looked up by their range in
 * typed-array hash tables (no string each) — whole first (ignore_merges), then among those counted
 * before — and merges are a numeric pair → rank table.
 * Merging is O(n log n) in the pre-token's length, so one megabyte-long run of a character is cheap.
 * Throws UnsupportedTokenizerError for any tokenizer.json feature it does not implement, so the
 * caller can fall back to the general implementation rather than count wrongly.
 */
/**
 * Everything a ByteLevelBpe counts with, built once from tokenizer.json. The large tables live in
 * SharedArrayBuffers, so worker threads get them by reference instead of parsing tokenizer.json again.
 */
export interface BpeTables {
  readonly byteIds: Int32Array;
  readonly merges: MergeTableData;
  /** With ignore_merges: whole pre-tokens (as text, not byte-level strings) that are single vocabulary entries. */
  readonly wholeTokens: SubstringTableData | undefined;
  /** tokenizer.json's pre_tokenizer, which the pre-tokenizer is compiled from in each thread. */
  readonly preTokenizer: unknown;
  readonly addedTokens: ReadonlyArray<{ readonly content: string; readonly id: number }>;
  readonly prefixIds: readonly number[];
  readonly suffixIds: readonly number[];
}

export class ByteLevelBpe {
  /** What this instance counts with, to hand to a worker thread. */
  readonly tables: BpeTables;
  private readonly byteIds: Int32Array;
  private readonly merges: MergeTable;
  private readonly wholeTokens: SubstringTable | undefined;
  private readonly preTokenEnd: PreTokenizer;
  private readonly addedTokens: RegExp | undefined;
  private readonly addedIds = new Map<string, number>();
  private readonly prefixIds: readonly number[];
  private readonly suffixIds: readonly number[];
  /** Token counts of pre-tokens seen before (short ones only: they repeat; long ones rarely do). */
  private readonly pieceCounts = new GenerationalSubstringCache(CACHE_GENERATION_SIZE, CACHE_GENERATION_KEY_UNITS);
  /** Token counts of whole segments (text between added tokens) by SHA-256. */
  private readonly segmentCounts = new GenerationalCache<number>(SEGMENT_CACHE_GENERATION_SIZE);
  private readonly encoder = new TextEncoder();
  private readonly codeUnits = new CodeUnitBuffer();
  private readonly scanningScratch = {
    ids: new Int32Array(SMALL_PIECE_BYTES),
    pairRanks: new Int32Array(SMALL_PIECE_BYTES),
    pairMerged: new Int32Array(SMALL_PIECE_BYTES),
  };

  /** From tokenizer.json, or from the tables another instance (say, on another thread) was built with. */
  constructor(source: TokenizerJson | BpeTables) {
    this.tables = 'byteIds' in source && source.byteIds instanceof Int32Array ? source : buildTables(source as TokenizerJson);
    const { byteIds, merges, wholeTokens, preTokenizer, addedTokens, prefixIds, suffixIds } = this.tables;
    this.byteIds = byteIds;
    this.merges = new MergeTable(merges);
    this.wholeTokens = wholeTokens === undefined ? undefined : new SubstringTable(wholeTokens);
    this.preTokenEnd = byteLevelPreTokenizer(preTokenizer);
    for (const token of addedTokens) this.addedIds.set(token.content, token.id);
    this.addedTokens = addedTokens.length
      ? new RegExp(
          [...addedTokens]
            .sort((a, b) => b.content.length - a.content.length)
            .map((t) => t.content.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
            .join('|'),
          'g',
        )
      : undefined;
    this.prefixIds = prefixIds;
    this.suffixIds = suffixIds;
  }

  /** Token ids for `text`; with addSpecialTokens, the post-processor's single-sequence template too. */
  encode(text: string, addSpecialTokens: boolean): number[] {
    const ids: number[] = addSpecialTokens ? [...this.prefixIds] : [];
    this.forEachSegment(text, (segment, addedId) => {
      if (segment !== undefined) {
        const units = this.codeUnits.of(segment);
        for (let start = 0, end = 0; start < units.length; start = end) {
          end = this.preTokenEnd(segment, units, start);
          ids.push(...this.pieceIds(segment, units, start, end));
        }
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
   * conversation, a system prompt) is looked up by its SHA-256 instead of being tokenized again.
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
    const key = hash('sha256', segment, 'base64');
    let count = this.segmentCounts.get(key);
    if (count === undefined) {
      count = this.countPieces(segment);
      this.segmentCounts.set(key, count);
    }
    return count;
  }

  private countPieces(segment: string): number {
    const units = this.codeUnits.of(segment);
    let total = 0;
    for (let start = 0, end = 0; start < units.length; start = end) {
      end = this.preTokenEnd(segment, units, start);
      total += this.pieceCount(segment, units, start, end);
    }
    return total;
  }

  /**
   * The token count of the pre-token text[start, end) (`units` are text's code units), looked up by
   * its range: no string is made unless it must be merged.
   */
  private pieceCount(text: string, units: Uint16Array, start: number, end: number): number {
    if (end - start > MAX_CACHED_PIECE_LENGTH) return this.pieceIds(text, units, start, end).length;
    const hash = hashOfRange(units, start, end);
    if (this.wholeTokens !== undefined && this.wholeTokens.get(units, start, end, hash) >= 0) return 1;
    let count = this.pieceCounts.get(units, start, end, hash);
    if (count < 0) {
      count = this.merge(this.encoder.encode(text.slice(start, end))).length;
      this.pieceCounts.add(units, start, end, hash, count);
    }
    return count;
  }

  private pieceIds(text: string, units: Uint16Array, start: number, end: number): readonly number[] {
    const whole = this.wholeTokens !== undefined ? this.wholeTokens.get(units, start, end, hashOfRange(units, start, end)) : -1;
    return whole >= 0 ? [whole] : this.merge(this.encoder.encode(text.slice(start, end)));
  }

  private merge(bytes: Uint8Array): number[] {
    return bytes.length > SMALL_PIECE_BYTES ? this.mergeThroughQueue(bytes) : this.mergeByScanning(bytes);
  }

  /**
   * Repeatedly merge the lowest-ranked adjacent pair (leftmost on ties), scanning: fine for short
   * pieces. Each pair's rule is looked up once: a merge changes only the pairs either side of it.
   */
  private mergeByScanning(bytes: Uint8Array): number[] {
    const merges = this.merges;
    // Scratch space (a piece is at most SMALL_PIECE_BYTES long): the symbols, and for each adjacent
    // pair ids[i], ids[i + 1] the rank of its merge rule (-1: none) and the id it merges into.
    const { ids, pairRanks, pairMerged } = this.scanningScratch;
    const lookUpPair = (i: number) => {
      const slot = merges.find(ids[i]!, ids[i + 1]!);
      pairRanks[i] = slot < 0 ? -1 : merges.rankAt(slot);
      if (slot >= 0) pairMerged[i] = merges.mergedAt(slot);
    };
    let length = bytes.length;
    for (let i = 0; i < length; i++) ids[i] = this.byteIds[bytes[i]!]!;
    for (let i = 0; i + 1 < length; i++) lookUpPair(i);
    for (;;) {
      let at = -1;
      for (let i = 0; i + 1 < length; i++) {
        const rank = pairRanks[i]!;
        if (rank >= 0 && (at < 0 || rank < pairRanks[at]!)) at = i;
      }
      if (at < 0) return Array.from(ids.subarray(0, length));
      ids[at] = pairMerged[at]!;
      length--;
      for (let i = at + 1; i < length; i++) {
        ids[i] = ids[i + 1]!;
        pairRanks[i - 1] = pairRanks[i]!;
        pairMerged[i - 1] = pairMerged[i]!;
      }
      if (at > 0) lookUpPair(at - 1);
      if (at + 1 < length) lookUpPair(at);
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
      pairRank[i] = merges.rankAt(slot);
      pairMerged[i] = merges.mergedAt(slot);
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
 * The merge rules as an open-addressing hash table in one typed array: (left id, right id) → rank and
 * merged id, the four side by side so that a probe touches one cache line. A Map keyed by
 * left * 2^17 + right would box every key and value (they exceed small integers) and take more than
 * twice the memory.
 */
export interface MergeTableData {
  readonly slots: Int32Array;
  readonly bits: number;
}

class MergeTable {
  /** RULE_FIELDS numbers a slot: left id (-1: an empty slot), right id, rank, merged id. */
  private readonly slots: Int32Array;
  private readonly bits: number;

  constructor({ slots, bits }: MergeTableData) {
    this.slots = slots;
    this.bits = bits;
  }

  /** An empty table for this many rules, in shared memory. */
  static sized(rules: number): MergeTable {
    const bits = Math.max(4, Math.ceil(Math.log2(rules / 0.6)));
    const slots = sharedInt32Array((1 << bits) * RULE_FIELDS);
    for (let at = LEFT; at < slots.length; at += RULE_FIELDS) slots[at] = -1;
    return new MergeTable({ slots, bits });
  }

  get data(): MergeTableData {
    return { slots: this.slots, bits: this.bits };
  }

  /** Adds a rule unless the pair already has one: the first (lowest-ranked) rule for a pair wins. */
  add(left: number, right: number, rank: number, merged: number): void {
    const at = this.slotOf(left, right) * RULE_FIELDS;
    if (this.slots[at + LEFT] !== -1) return;
    this.slots[at + LEFT] = left;
    this.slots[at + RIGHT] = right;
    this.slots[at + RANK] = rank;
    this.slots[at + MERGED] = merged;
  }

  /** The slot holding the rule for (left, right), or -1 when the pair does not merge. */
  find(left: number, right: number): number {
    const slot = this.slotOf(left, right);
    return this.slots[slot * RULE_FIELDS + LEFT] === -1 ? -1 : slot;
  }

  /** The rank of the rule in a slot `find` returned. */
  rankAt(slot: number): number {
    return this.slots[slot * RULE_FIELDS + RANK]!;
  }

  /** The merged id of the rule in a slot `find` returned. */
  mergedAt(slot: number): number {
    return this.slots[slot * RULE_FIELDS + MERGED]!;
  }

  /** Where (left, right) is, or the empty slot where it would go (linear probing). */
  private slotOf(left: number, right: number): number {
    const mask = (1 << this.bits) - 1;
    for (let slot = (Math.imul(left, 0x9e3779b1) ^ Math.imul(right, 0x85ebca77)) >>> (32 - this.bits); ; slot = (slot + 1) & mask) {
      const l = this.slots[slot * RULE_FIELDS + LEFT]!;
      if (l === -1 || (l === left && this.slots[slot * RULE_FIELDS + RIGHT] === right)) return slot;
    }
  }
}

const RULE_FIELDS = 4;
const LEFT = 0;
const RIGHT = 1;
const RANK = 2;
const MERGED = 3;

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

/** Reads tokenizer.json into tables; throws UnsupportedTokenizerError for anything the fast path does not implement. */
function buildTables(json: TokenizerJson): BpeTables {
  const model = json.model;
  if (model?.type !== 'BPE' || !model.vocab || !model.merges) throw new UnsupportedTokenizerError('model is not BPE');
  if (model.byte_fallback || model.dropout || model.continuing_subword_prefix || model.end_of_word_suffix) {
    throw new UnsupportedTokenizerError('BPE options beyond byte-level BPE');
  }
  if (json.normalizer) throw new UnsupportedTokenizerError('normalizer');
  byteLevelPreTokenizer(json.pre_tokenizer);

  const vocab = model.vocab;
  const unicodeOfByte = byteToUnicode();
  const byteOfUnicode = new Map<string, number>();
  unicodeOfByte.forEach((ch, byte) => byteOfUnicode.set(ch, byte));
  const byteIds = sharedInt32Array(256);
  for (let byte = 0; byte < 256; byte++) {
    const id = vocab[unicodeOfByte[byte]!];
    if (id === undefined) throw new UnsupportedTokenizerError(`no token for byte ${byte}`);
    byteIds[byte] = id;
  }
  const merges = MergeTable.sized(model.merges.length);
  model.merges.forEach((merge, rank) => {
    const [left, right] = typeof merge === 'string' ? splitMerge(merge) : merge;
    const leftId = vocab[left];
    const rightId = vocab[right];
    const mergedId = vocab[left + right];
    if (leftId === undefined || rightId === undefined || mergedId === undefined) {
      throw new UnsupportedTokenizerError(`merge ${rank} names tokens missing from the vocabulary`);
    }
    merges.add(leftId, rightId, rank, mergedId);
  });

  const added = json.added_tokens ?? [];
  const addedIds = new Map<string, number>();
  for (const token of added) {
    if (token.lstrip || token.rstrip || token.single_word) throw new UnsupportedTokenizerError('added tokens with strip options');
    addedIds.set(token.content, token.id);
  }
  const [prefixIds, suffixIds] = singleTemplate(json.post_processor, addedIds, vocab);
  return {
    byteIds,
    merges: merges.data,
    wholeTokens: model.ignore_merges === true ? wholeTokenTable(vocab, byteOfUnicode).data : undefined,
    preTokenizer: json.pre_tokenizer,
    addedTokens: added.map(({ content, id }) => ({ content, id })),
    prefixIds,
    suffixIds,
  };
}

function sharedInt32Array(length: number): Int32Array {
  return new Int32Array(new SharedArrayBuffer(length * Int32Array.BYTES_PER_ELEMENT));
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

/** Whole vocabulary entries by the text they stand for; entries that are not valid UTF-8 on their own are never a whole pre-token. */
function wholeTokenTable(vocab: Record<string, number>, byteOfUnicode: ReadonlyMap<string, number>): SubstringTable {
  // ignoreBOM keeps a leading U+FEFF: some vocabulary entries start with one.
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  const entries: Array<[string, number]> = [];
  for (const [token, id] of Object.entries(vocab)) {
    const bytes = [...token].map((ch) => byteOfUnicode.get(ch));
    if (bytes.some((b) => b === undefined)) continue;
    try {
      entries.push([decoder.decode(Uint8Array.from(bytes as number[])), id]);
    } catch {
      // not valid UTF-8
    }
  }
  const allUnits = new Uint16Array(entries.reduce((total, [text]) => total + text.length, 0));
  const table = SubstringTable.sized(entries.length, allUnits.length, { shared: true });
  let start = 0;
  for (const [text, id] of entries) {
    for (let i = 0; i < text.length; i++) allUnits[start + i] = text.charCodeAt(i);
    const end = start + text.length;
    table.add(allUnits, start, end, hashOfRange(allUnits, start, end), id);
    start = end;
  }
  return table;
}

/** The pre-tokenizer of a byte-level tokenizer: Split(regex, Isolated) + ByteLevel, or ByteLevel with its own regex. */
function byteLevelPreTokenizer(preTokenizer: unknown): PreTokenizer {
  const p = preTokenizer as { type?: string; pretokenizers?: unknown[]; use_regex?: boolean; add_prefix_space?: boolean } | null;
  if (p?.type === 'ByteLevel' && p.use_regex !== false && !p.add_prefix_space) return preTokenizerFor(GPT2_PATTERN);
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
      return preTokenizerFor(pattern);
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
