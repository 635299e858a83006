import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  ListWatch,
  PatchStrategy,
  Watch,
  setHeaderOptions,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type V1ConfigMap,
  type V1Secret,
} from '@kubernetes/client-node';
import type { ConfigSnapshot } from '../config/snapshot.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { LeaderElector } from './leader.js';
import { mergeKubeState, type ApiKeySecret, type QuotaVerdict } from './merge.js';
import { desiredStatus, sameStatus } from './status.js';
import { SupervisedInformer } from './supervised-informer.js';
import { objectKey, TOKEN_QUOTA_GROUP, TOKEN_QUOTA_PLURAL, TOKEN_QUOTA_VERSION, type TokenQuotaObject } from './token-quota.js';

export interface KubeControllerOptions {
  readonly kubeConfig: KubeConfig;
  readonly namespace: string;
  readonly configMapName: string;
  readonly configMapKey?: string;
  readonly secretLabelSelector?: string;
  readonly leaseName?: string;
  /** This replica's name in the Lease (the pod name). */
  readonly identity: string;
  /** Receives every new snapshot. */
  readonly apply: (snapshot: ConfigSnapshot) => void;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly timings?: {
    readonly debounceMs?: number;
    readonly resyncMs?: number;
    readonly silenceMs?: number;
    readonly leaseDurationMs?: number;
    readonly renewDeadlineMs?: number;
    readonly retryPeriodMs?: number;
  };
}

type TokenQuotaResource = TokenQuotaObject & KubernetesObject;

/**
 * Watches the limits ConfigMap, the TokenQuotas and the API-key Secrets of one namespace, merges
 * them into the snapshot every replica enforces (rebuilt from the whole cache on each change, so a
 * replayed or repeated event changes nothing), re-applies from the cache periodically, and — on the
 * replica holding the Lease only — writes each TokenQuota's status.
 */
export class KubeController {
  private readonly configMaps: SupervisedInformer<V1ConfigMap>;
  private readonly tokenQuotas: SupervisedInformer<TokenQuotaResource>;
  private readonly secrets: SupervisedInformer<V1Secret>;
  private readonly elector: LeaderElector;
  private readonly customObjects: CustomObjectsApi;
  private lastGoodConfigMapText: string | undefined;
  private verdicts: ReadonlyMap<string, QuotaVerdict> = new Map();
  private applied = false;
  private debounce: NodeJS.Timeout | undefined;
  private resync: NodeJS.Timeout | undefined;
  private writingStatuses: Promise<void> = Promise.resolve();

  constructor(private readonly options: KubeControllerOptions) {
    const { kubeConfig: kc, namespace, logger, metrics } = options;
    const core = kc.makeApiClient(CoreV1Api);
    this.customObjects = kc.makeApiClient(CustomObjectsApi);
    const onChange = () => this.schedule();
    const onError = (informer: string) => metrics.kubeWatchErrors.inc({ informer });
    const common = { onChange, onError, logger, silenceMs: options.timings?.silenceMs };
    const fieldSelector = `metadata.name=${options.configMapName}`;
    const labelSelector = options.secretLabelSelector ?? 'tokenwarden.dev/api-keys=true';

    this.configMaps = new SupervisedInformer({
      ...common,
      name: 'configmap',
      create: () =>
        new ListWatch(`/api/v1/namespaces/${namespace}/configmaps`, new Watch(kc), () => core.listNamespacedConfigMap({ namespace, fieldSelector }), false, undefined, fieldSelector),
    });
    this.tokenQuotas = new SupervisedInformer({
      ...common,
      name: 'tokenquotas',
      create: () =>
        new ListWatch(
          `/apis/${TOKEN_QUOTA_GROUP}/${TOKEN_QUOTA_VERSION}/namespaces/${namespace}/${TOKEN_QUOTA_PLURAL}`,
          new Watch(kc),
          () =>
            this.customObjects.listNamespacedCustomObject({
              group: TOKEN_QUOTA_GROUP,
              version: TOKEN_QUOTA_VERSION,
              namespace,
              plural: TOKEN_QUOTA_PLURAL,
            }) as Promise<KubernetesListObject<TokenQuotaResource>>,
          false,
        ),
    });
    this.secrets = new SupervisedInformer({
      ...common,
      name: 'secrets',
      create: () =>
        new ListWatch(`/api/v1/namespaces/${namespace}/secrets`, new Watch(kc), () => core.listNamespacedSecret({ namespace, labelSelector }), false, labelSelector),
    });
    this.elector = new LeaderElector({
      api: kc.makeApiClient(CoordinationV1Api),
      namespace,
      leaseName: options.leaseName ?? 'tokenwarden-leader',
      identity: options.identity,
      logger,
      leaseDurationMs: options.timings?.leaseDurationMs,
      renewDeadlineMs: options.timings?.renewDeadlineMs,
      retryPeriodMs: options.timings?.retryPeriodMs,
      onChange: (leading) => {
        metrics.leader.set(leading ? 1 : 0);
        if (leading) this.writeStatuses();
      },
    });
  }

  /** True once every watch has listed and a configuration has been applied. */
  get ready(): boolean {
    return this.applied;
  }

  get isLeader(): boolean {
    return this.elector.isLeader;
  }

  start(): void {
    this.configMaps.start();
    this.tokenQuotas.start();
    this.secrets.start();
    this.elector.start();
    this.resync = setInterval(() => this.schedule(), this.options.timings?.resyncMs ?? 60_000).unref();
  }

  async stop(): Promise<void> {
    clearTimeout(this.debounce);
    clearInterval(this.resync);
    await Promise.all([this.configMaps.stop(), this.tokenQuotas.stop(), this.secrets.stop(), this.elector.stop()]);
    await this.writingStatuses;
  }

  private schedule(): void {
    if (this.debounce) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.reconcile();
    }, this.options.timings?.debounceMs ?? 50);
  }

  private reconcile(): void {
    if (!this.configMaps.synced || !this.tokenQuotas.synced || !this.secrets.synced) return;
    const { logger, metrics } = this.options;
    const configMap = this.configMaps.list()[0];
    const result = mergeKubeState(
      {
        configMapText: configMap?.data?.[this.options.configMapKey ?? 'limits.yaml'],
        tokenQuotas: this.tokenQuotas.list(),
        secrets: this.secrets.list() as ApiKeySecret[],
        configMap: { namespace: this.options.namespace, name: this.options.configMapName, key: this.options.configMapKey ?? 'limits.yaml' },
      },
      this.lastGoodConfigMapText,
    );
    metrics.configMapInvalid.set(result.configMapError ? 1 : 0);
    if (result.configMapError) logger.error({ err: result.configMapError }, 'limits ConfigMap unusable; the last good one stays in force');
    for (const rejected of result.rejectedSecrets) logger.warn({ secret: rejected }, 'API-key Secret entry refused');
    metrics.kubeObjectsRejected.set({ kind: 'Secret' }, result.rejectedSecrets.length);
    metrics.kubeObjectsRejected.set({ kind: 'TokenQuota' }, [...result.verdicts.values()].filter((v) => !v.ready).length);
    this.verdicts = result.verdicts;
    if (result.snapshot) {
      this.lastGoodConfigMapText = result.configMapTextUsed;
      this.options.apply(result.snapshot);
      this.applied = true;
      metrics.configGeneration.inc();
      metrics.configLastApply.set(Date.now() / 1000);
    }
    if (this.elector.isLeader) this.writeStatuses();
  }

  /** Patches the status of every TokenQuota whose desired status differs from what it shows. */
  private writeStatuses(): void {
    this.writingStatuses = this.writingStatuses.then(async () => {
      const now = new Date().toISOString();
      for (const quota of this.tokenQuotas.list()) {
        const verdict = this.verdicts.get(objectKey(quota));
        if (!verdict || !this.elector.isLeader) continue;
        const status = desiredStatus(quota, verdict, now);
        if (sameStatus(quota.status, status)) continue;
        try {
          await this.customObjects.patchNamespacedCustomObjectStatus(
            {
              group: TOKEN_QUOTA_GROUP,
              version: TOKEN_QUOTA_VERSION,
              namespace: quota.metadata!.namespace!,
              plural: TOKEN_QUOTA_PLURAL,
              name: quota.metadata!.name!,
              body: { status },
            },
            setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
          );
        } catch (err) {
          this.options.logger.warn({ tokenQuota: objectKey(quota), err: (err as Error).message }, 'could not write TokenQuota status');
        }
      }
    });
  }
}
