/**
 * Hash tables keyed by a range of UTF-16 code units, in typed arrays: looking up a pre-token needs
 * neither a string of its own nor a Map entry per key.
 */

/** FNV-1a over units[start, end), then murmur3's finalizer so the low bits index well. */
export function hashOfRange(units: Uint16Array, start: number, end: number): number {
  let hash = 0x811c9dc5;
  for (let i = start; i < end; i++) hash = Math.imul(hash ^ units[i]!, 0x01000193);
  hash = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b);
  hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35);
  return hash ^ (hash >>> 16);
}

const SLOT_FIELDS = 4;
const HASH = 0;
const KEY_START = 1;
const KEY_LENGTH = 2;
const VALUE = 3;

/**
 * A fixed-capacity map from non-empty strings (as code units) to non-negative int32 values, probed
 * linearly and never more than half full. Keys are kept in full and compared on every hash hit, so
 * a collision can never return another key's value.
 */
/** A SubstringTable's contents, to rebuild it on another thread (over the same memory when shared). */
export interface SubstringTableData {
  readonly slots: Int32Array;
  readonly keys: Uint16Array;
  readonly maxEntries: number;
  readonly entries: number;
  readonly keyUnitsUsed: number;
}

export class SubstringTable {
  /**
   * SLOT_FIELDS numbers a slot, side by side so that a probe touches one cache line: the key's hash,
   * where the key starts in `keys`, its length (0: an empty slot, so a new table needs no filling),
   * and the value.
   */
  private readonly slots: Int32Array;
  private readonly keys: Uint16Array;
  private readonly maxEntries: number;
  private readonly mask: number;
  private entries: number;
  private keyUnitsUsed: number;

  /** A table over `data`'s arrays: adding to it changes them, so use it read-only when they are shared. */
  constructor(data: SubstringTableData) {
    this.slots = data.slots;
    this.keys = data.keys;
    this.maxEntries = data.maxEntries;
    this.entries = data.entries;
    this.keyUnitsUsed = data.keyUnitsUsed;
    this.mask = data.slots.length / SLOT_FIELDS - 1;
  }

  /** An empty table; with `shared`, in SharedArrayBuffers that other threads can read (see `data`). */
  static sized(maxEntries: number, maxKeyUnits: number, { shared = false } = {}): SubstringTable {
    const slotCount = 2 ** Math.ceil(Math.log2(Math.max(2, maxEntries * 2)));
    const memory = (bytes: number) => (shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
    return new SubstringTable({
      slots: new Int32Array(memory(slotCount * SLOT_FIELDS * Int32Array.BYTES_PER_ELEMENT)),
      keys: new Uint16Array(memory(maxKeyUnits * Uint16Array.BYTES_PER_ELEMENT)),
      maxEntries,
      entries: 0,
      keyUnitsUsed: 0,
    });
  }

  get data(): SubstringTableData {
    const { slots, keys, maxEntries, entries, keyUnitsUsed } = this;
    return { slots, keys, maxEntries, entries, keyUnitsUsed };
  }

  /** The value of units[start, end), whose hashOfRange is `hash`; -1 when absent. */
  get(units: Uint16Array, start: number, end: number, hash: number): number {
    const at = this.slotOf(units, start, end, hash) * SLOT_FIELDS;
    return this.slots[at + KEY_LENGTH] === 0 ? -1 : this.slots[at + VALUE]!;
  }

  /** Whether a key of this many code units can still be added. */
  hasRoomFor(keyLength: number): boolean {
    return this.entries < this.maxEntries && this.keyUnitsUsed + keyLength <= this.keys.length;
  }

  /** Adds units[start, end), which must be non-empty, absent and fit (hasRoomFor). */
  add(units: Uint16Array, start: number, end: number, hash: number, value: number): void {
    if (end <= start) throw new Error('empty key');
    const at = this.slotOf(units, start, end, hash) * SLOT_FIELDS;
    this.slots[at + HASH] = hash;
    this.slots[at + KEY_START] = this.keyUnitsUsed;
    this.slots[at + KEY_LENGTH] = end - start;
    this.slots[at + VALUE] = value;
    for (let i = start; i < end; i++) this.keys[this.keyUnitsUsed++] = units[i]!;
    this.entries++;
  }

  clear(): void {
    this.slots.fill(0);
    this.entries = 0;
    this.keyUnitsUsed = 0;
  }

  /** The slot holding units[start, end), or the empty slot where it would go. */
  private slotOf(units: Uint16Array, start: number, end: number, hash: number): number {
    const length = end - start;
    const slots = this.slots;
    for (let slot = hash & this.mask; ; slot = (slot + 1) & this.mask) {
      const at = slot * SLOT_FIELDS;
      const keyLength = slots[at + KEY_LENGTH]!;
      if (keyLength === 0) return slot;
      if (slots[at + HASH] === hash && keyLength === length && this.keyEquals(slots[at + KEY_START]!, units, start, length)) return slot;
    }
  }

  private keyEquals(keyStart: number, units: Uint16Array, start: number, length: number): boolean {
    const keys = this.keys;
    for (let k = 0; k < length; k++) if (keys[keyStart + k] !== units[start + k]) return false;
    return true;
  }
}

/**
 * A bounded cache of two SubstringTable generations, like GenerationalCache: lookups see both,
 * inserts go to the current one, and when it is full it becomes the previous one (the old previous
 * one is cleared and reused). Keys must be at most keyUnitsPerGeneration long.
 */
export class GenerationalSubstringCache {
  private current: SubstringTable;
  private previous: SubstringTable;

  constructor(entriesPerGeneration: number, keyUnitsPerGeneration: number) {
    this.current = SubstringTable.sized(entriesPerGeneration, keyUnitsPerGeneration);
    this.previous = SubstringTable.sized(entriesPerGeneration, keyUnitsPerGeneration);
  }

  /** The value of units[start, end), whose hashOfRange is `hash`; -1 when absent. */
  get(units: Uint16Array, start: number, end: number, hash: number): number {
    const value = this.current.get(units, start, end, hash);
    if (value >= 0) return value;
    const old = this.previous.get(units, start, end, hash);
    if (old >= 0) this.add(units, start, end, hash, old);
    return old;
  }

  /** Adds units[start, end), which get has just found absent from the current generation. */
  add(units: Uint16Array, start: number, end: number, hash: number, value: number): void {
    if (!this.current.hasRoomFor(end - start)) {
      [this.previous, this.current] = [this.current, this.previous];
      this.current.clear();
    }
    this.current.add(units, start, end, hash, value);
  }
}
