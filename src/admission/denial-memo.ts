import type { ConfigSnapshot } from '../config/snapshot.js';
import type { QuotaDenial } from '../reports/usage-reports.js';
import type { Verdict } from './gatekeeper.js';

/** A remembered 429: the answer, and the denial it stands for (reported again on every recall). */
export interface RememberedDenial {
  readonly verdict: Verdict;
  readonly denial: QuotaDenial;
}

/** How many users × models a memo remembers at most (expired entries go first). */
const MAX_ENTRIES = 50_000;

/**
 * Remembers, per user and model, a denial that does not depend on the request's size — requests per
 * minute, concurrency — until the moment it could change, so that a caller who keeps knocking is
 * answered before its prompt is counted: counting is the expensive part, and a flood of large
 * prompts from one denied key must not queue ahead of everyone else's.
 */
export class DenialMemo {
  private readonly denials = new Map<string, { readonly remembered: RememberedDenial; readonly untilMs: number; readonly config: ConfigSnapshot }>();

  /** The remembered denial, while it holds and the configuration it was made under is still in force. */
  recall(user: string, model: string, config: ConfigSnapshot, nowMs: number): RememberedDenial | undefined {
    const key = JSON.stringify([user, model]);
    const entry = this.denials.get(key);
    if (entry === undefined) return undefined;
    if (nowMs < entry.untilMs && entry.config === config) return entry.remembered;
    this.denials.delete(key);
    return undefined;
  }

  remember(user: string, model: string, config: ConfigSnapshot, remembered: RememberedDenial, untilMs: number): void {
    if (this.denials.size >= MAX_ENTRIES) this.prune(untilMs);
    this.denials.set(JSON.stringify([user, model]), { remembered, untilMs, config });
  }

  private prune(nowMs: number): void {
    for (const [key, entry] of this.denials) if (entry.untilMs <= nowMs) this.denials.delete(key);
    // Still full: forget the oldest half (a forgotten denial only costs one count).
    if (this.denials.size >= MAX_ENTRIES) [...this.denials.keys()].slice(0, MAX_ENTRIES / 2).forEach((key) => this.denials.delete(key));
  }
}
