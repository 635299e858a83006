import type { QuotaEngine } from '../quota/engine.js';
import { StoreUnavailableError } from '../quota/store.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { settlementFor, type CompletedRequest } from './rules.js';

/** Settles finished requests against their reservations, a batch (one access-log message) at a time. */
export class Reconciler {
  constructor(
    private readonly deps: {
      readonly engine: QuotaEngine;
      readonly metrics: Metrics;
      readonly logger: Logger;
      /** Label charged tokens by user too (off by default: user counts can be unbounded). */
      readonly userLabel: boolean;
    },
  ) {}

  async settle(requests: readonly CompletedRequest[]): Promise<void> {
    const { engine, metrics, logger } = this.deps;
    const settlements = requests.map(settlementFor);
    const reserved = settlements.filter((s) => 'reservation' in s);
    metrics.accessLogEntries.inc({ outcome: 'not_reserved' }, settlements.length - reserved.length);
    if (reserved.length === 0) return;

    let outcomes;
    try {
      outcomes = await engine.settle(
        reserved.map(({ reservation, charge }) => ({ user: reservation.user, model: reservation.model, reservationId: reservation.id, charge })),
      );
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      // The reservations stay charged as reserved and their leases expire: nothing is under-charged.
      metrics.accessLogEntries.inc({ outcome: 'failed' }, reserved.length);
      metrics.storeErrors.inc({ operation: 'settle' });
      logger.warn({ err: err.message, entries: reserved.length }, 'could not settle access-log entries');
      return;
    }

    outcomes.forEach((outcome, i) => {
      const { reservation, rule, charge, usage } = reserved[i]!;
      if (outcome.status !== 'settled') {
        metrics.accessLogEntries.inc({ outcome: outcome.status === 'duplicate' ? 'duplicate' : 'expired' });
        return;
      }
      metrics.accessLogEntries.inc({ outcome: 'settled' });
      metrics.settlements.inc({ rule, model: reservation.model });
      const prompt = usage?.promptTokens ?? Math.min(outcome.promptTokens, outcome.chargedTokens);
      const completion = outcome.chargedTokens - prompt;
      const labels = this.deps.userLabel ? { model: reservation.model, user: reservation.user } : { model: reservation.model };
      metrics.tokensCharged.inc({ ...labels, kind: 'prompt' }, prompt);
      metrics.tokensCharged.inc({ ...labels, kind: 'completion' }, completion);
      if (charge.kind === 'actual') metrics.reservationError.observe({ model: reservation.model }, outcome.reservedTokens - charge.tokens);
      logger.debug({ reservationId: reservation.id, rule, charged: outcome.chargedTokens, reserved: outcome.reservedTokens }, 'settled');
    });
  }
}
