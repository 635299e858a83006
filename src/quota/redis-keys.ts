import { COUNTER_NAMES, type CounterName } from '../limit-kinds.js';
import type { AggregateId } from '../reports/counter-sets.js';
import type { Scope } from './store.js';

/** Short key suffixes of the counters (kept from the first releases, so counters survive upgrades). */
const COUNTER_SUFFIX: Record<CounterName, string> = {
  tokensPerMinute: 'tpm',
  tokensPerHour: 'tph',
  tokensPerDay: 'tpd',
  tokensPerMonth: 'tpmo',
  requestsPerMinute: 'rpm',
};

/**
 * Redis keys of one scope (user and model). User and model are base64url-encoded, so neither can
 * contain the separator or a brace: the tag is injective (no user name can address another's
 * counters) and it is the Redis Cluster hash tag, so every key of one scope lands in one slot.
 */
export class ScopeKeys {
  private readonly prefix: string;

  constructor(scope: Scope) {
    this.prefix = `tw:{${encode(scope.user)}.${encode(scope.model)}}:`;
  }

  counter(name: CounterName): string {
    return this.prefix + COUNTER_SUFFIX[name];
  }

  /** Every counter of the scope, in COUNTER_NAMES order. */
  allCounters(): string[] {
    return COUNTER_NAMES.map((name) => this.counter(name));
  }

  get leases(): string {
    return `${this.prefix}leases`;
  }

  get epoch(): string {
    return `${this.prefix}epoch`;
  }

  reservation(id: string): string {
    return `${this.prefix}resv:${id}`;
  }

  /** The tombstone of a settled reservation. */
  settled(id: string): string {
    return `${this.prefix}done:${id}`;
  }
}

function encode(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}

/** The key of one of the rate-limit service's fixed-window counters (its name encoded: any text is safe). */
export function hitCounterKey(counter: string): string {
  return `twrl:${encode(counter)}`;
}

/**
 * The key of a report aggregate. Every one carries the hash tag {twr}: they share one Redis Cluster
 * slot, so a whole batch of increments is one script.
 */
export function reportAggregateKey(id: AggregateId): string {
  return `twr:{twr}:${id.period}:${id.bucket}:${id.kind}${id.model === undefined ? '' : `:${encode(id.model)}`}`;
}

/** Marks a batch of report increments as applied (same slot as the aggregates). */
export function reportBatchKey(batchId: string): string {
  return `twr:{twr}:batch:${encode(batchId)}`;
}
