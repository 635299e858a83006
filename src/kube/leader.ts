import { V1MicroTime, type CoordinationV1Api, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from '../telemetry/logger.js';

export interface LeaderElectionOptions {
  readonly api: CoordinationV1Api;
  readonly namespace: string;
  readonly leaseName: string;
  /** This replica's identity (the pod name). */
  readonly identity: string;
  readonly leaseDurationMs?: number;
  readonly renewDeadlineMs?: number;
  readonly retryPeriodMs?: number;
  readonly logger: Logger;
  readonly onChange: (leading: boolean) => void;
}

/**
 * Leader election on a coordination.k8s.io/v1 Lease, following client-go's algorithm (client-node
 * has none): try to acquire or renew every retry period; a lease held by another replica is theirs
 * until it has gone unrenewed for leaseDuration as measured on this replica's own clock (remote
 * timestamps are never trusted); a leader that cannot renew within renewDeadline steps down; an
 * update carries the read resourceVersion, so of two racing replicas only one wins. Leadership here
 * only gates status writes, which are idempotent, so a brief overlap is harmless.
 */
export class LeaderElector {
  private leading = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  private observed: { record: string; atMs: number } | undefined;
  private lastRenewMs = 0;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;

  constructor(private readonly options: LeaderElectionOptions) {
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.stopped = false;
    void this.tick();
  }

  /** Stops campaigning; a leader releases the lease so that another replica takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (!this.leading) return;
    this.setLeading(false);
    try {
      const lease = await this.read();
      if (lease?.spec?.holderIdentity === this.options.identity) {
        lease.spec.holderIdentity = undefined;
        lease.spec.leaseDurationSeconds = 1;
        await this.options.api.replaceNamespacedLease({ name: this.options.leaseName, namespace: this.options.namespace, body: lease });
      }
    } catch (err) {
      this.options.logger.warn({ err: (err as Error).message }, 'could not release the leader lease');
    }
  }

  private async tick(): Promise<void> {
    try {
      if (await this.tryAcquireOrRenew()) this.lastRenewMs = Date.now();
    } catch (err) {
      this.options.logger.debug({ err: (err as Error).message }, 'leader election attempt failed');
    }
    if (this.leading && Date.now() - this.lastRenewMs > this.renewDeadlineMs) {
      this.options.logger.warn('could not renew the leader lease in time; stepping down');
      this.setLeading(false);
    }
    if (this.stopped) return;
    const jitter = this.leading ? 1 : 1 + Math.random() * 0.2;
    this.timer = setTimeout(() => void this.tick(), this.retryPeriodMs * jitter);
  }

  /** One round of client-go's tryAcquireOrRenew; true when this replica holds the lease afterwards. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const { api, namespace, leaseName: name, identity } = this.options;
    const now = new V1MicroTime();
    const lease = await this.read();
    if (lease === undefined) {
      await api.createNamespacedLease({
        namespace,
        body: {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace },
          spec: { holderIdentity: identity, leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000), acquireTime: now, renewTime: now, leaseTransitions: 0 },
        },
      });
      this.setLeading(true);
      return true;
    }
    const spec = lease.spec ?? {};
    const record = JSON.stringify([spec.holderIdentity, spec.renewTime, spec.leaseTransitions]);
    if (this.observed?.record !== record) this.observed = { record, atMs: Date.now() };
    const heldByOther = Boolean(spec.holderIdentity) && spec.holderIdentity !== identity;
    const durationMs = (spec.leaseDurationSeconds ?? Math.ceil(this.leaseDurationMs / 1000)) * 1000;
    if (heldByOther && this.observed.atMs + durationMs > Date.now()) {
      this.setLeading(false);
      return false;
    }
    const mine = spec.holderIdentity === identity;
    lease.spec = {
      ...spec,
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
      renewTime: now,
      acquireTime: mine && spec.acquireTime ? new V1MicroTime(spec.acquireTime) : now,
      leaseTransitions: mine ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + 1,
    };
    await api.replaceNamespacedLease({ name, namespace, body: lease });
    this.setLeading(true);
    return true;
  }

  private async read(): Promise<V1Lease | undefined> {
    try {
      return await this.options.api.readNamespacedLease({ name: this.options.leaseName, namespace: this.options.namespace });
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  }

  private setLeading(leading: boolean): void {
    if (leading === this.leading) return;
    this.leading = leading;
    this.options.logger.info({ identity: this.options.identity, leading }, leading ? 'became leader' : 'no longer leader');
    this.options.onChange(leading);
  }
}
