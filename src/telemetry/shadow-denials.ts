import type { LimitName } from '../limit-kinds.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

/** Admissions that limits in shadow mode would have denied: counted per limit and model, and logged. */
export function reportShadowDenials(
  deps: { readonly metrics: Metrics; readonly logger: Logger },
  admission: { readonly user: string; readonly model: string; readonly wouldDeny: readonly LimitName[]; readonly via: 'ext_authz' | 'ratelimit' },
): void {
  if (admission.wouldDeny.length === 0) return;
  for (const limit of admission.wouldDeny) deps.metrics.shadowDenials.inc({ limit, model: admission.model });
  deps.logger.info(admission, 'shadow limit would deny');
}
