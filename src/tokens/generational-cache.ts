/**
 * A bounded cache of two generations: lookups see both, inserts go to the current one, and when it is
 * full it becomes the previous one (the old previous one is dropped). Entries used in the last
 * generation survive; memory stays within twice the generation size, with no per-entry bookkeeping.
 */
export class GenerationalCache<V> {
  private current = new Map<string, V>();
  private previous = new Map<string, V>();

  constructor(private readonly generationSize: number) {}

  get(key: string): V | undefined {
    const value = this.current.get(key);
    if (value !== undefined) return value;
    const old = this.previous.get(key);
    if (old !== undefined) this.set(key, old);
    return old;
  }

  set(key: string, value: V): void {
    if (this.current.size >= this.generationSize) {
      this.previous = this.current;
      this.current = new Map();
    }
    this.current.set(key, value);
  }
}
