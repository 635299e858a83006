import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A stand-in for kube-apiserver (none can run here), speaking the wire protocol the real
 * @kubernetes/client-node informers use: list with resourceVersion, watch streams of JSON lines
 * (ADDED/MODIFIED/DELETED/BOOKMARK/ERROR), 410 Gone for a resourceVersion older than the kept
 * history, label and field selectors, merge-patch of a custom resource's /status, and Leases with
 * optimistic concurrency (409 on a stale resourceVersion) and MicroTime validation.
 */
type KubeObject = { apiVersion?: string; kind?: string; metadata: Record<string, any>; [key: string]: any };
type Event = { rv: number; collection: string; type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: KubeObject };
interface Watcher {
  collection: string;
  res: ServerResponse;
  matches: (o: KubeObject) => boolean;
}

const COLLECTIONS: Array<[RegExp, string]> = [
  [/^\/api\/v1\/namespaces\/([^/]+)\/(configmaps|secrets)(?:\/([^/]+))?$/, '$2'],
  [/^\/apis\/tokenwarden\.dev\/v1alpha1\/namespaces\/([^/]+)\/(tokenquotas)(?:\/([^/]+))?(\/status)?$/, '$2'],
  [/^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/(leases)(?:\/([^/]+))?$/, '$2'],
];
const LIST_KIND: Record<string, string> = { configmaps: 'ConfigMapList', secrets: 'SecretList', tokenquotas: 'TokenQuotaList', leases: 'LeaseList' };
const MICROTIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

export class FakeKubeApiServer {
  private readonly server: Server;
  private rv = 100;
  /** collection key ("ns/kind") → name → object */
  private readonly objects = new Map<string, Map<string, KubeObject>>();
  private history: Event[] = [];
  private readonly watchers = new Set<Watcher>();
  readonly requests: Array<{ method: string; url: string; contentType?: string; authorization?: string }> = [];
  port = 0;

  constructor() {
    this.server = createServer((req, res) => {
      this.requests.push({ method: req.method ?? '', url: req.url ?? '', contentType: req.headers['content-type'], authorization: req.headers.authorization });
      this.handle(req, res).catch((err) => status(res, 500, 'InternalError', String(err)));
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.dropWatches();
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Creates or replaces an object (generation bumps when the spec changes), notifying watches. */
  put(namespace: string, kind: string, object: KubeObject): KubeObject {
    const table = this.table(namespace, kind);
    const name = object.metadata.name as string;
    const previous = table.get(name);
    const stored: KubeObject = structuredClone({
      ...object,
      metadata: {
        ...object.metadata,
        namespace,
        uid: previous?.metadata.uid ?? `uid-${name}-${this.rv}`,
        creationTimestamp: previous?.metadata.creationTimestamp ?? object.metadata.creationTimestamp ?? new Date().toISOString(),
        generation: previous === undefined ? 1 : previous.metadata.generation + (JSON.stringify(previous.spec) === JSON.stringify(object.spec) ? 0 : 1),
        resourceVersion: String(++this.rv),
      },
      ...(previous?.status && object.status === undefined ? { status: previous.status } : {}),
    });
    table.set(name, stored);
    this.emit(`${namespace}/${kind}`, previous ? 'MODIFIED' : 'ADDED', stored);
    return stored;
  }

  delete(namespace: string, kind: string, name: string): void {
    const table = this.table(namespace, kind);
    const previous = table.get(name);
    if (!previous) return;
    table.delete(name);
    this.emit(`${namespace}/${kind}`, 'DELETED', { ...previous, metadata: { ...previous.metadata, resourceVersion: String(++this.rv) } });
  }

  get(namespace: string, kind: string, name: string): KubeObject | undefined {
    return this.table(namespace, kind).get(name);
  }

  /** Forgets the event history: any watch resuming from an older resourceVersion gets 410 Gone. */
  compactHistory(): void {
    this.history = [];
    this.historyStart = this.rv;
  }

  /** Destroys every watch connection mid-stream (the client sees a premature close). */
  dropWatches(): void {
    for (const w of this.watchers) w.res.socket?.destroy();
    this.watchers.clear();
  }

  /** Open watches stay connected but receive nothing more (a half-open connection). */
  stallWatches(): void {
    this.watchers.clear();
  }

  /** Sends 410 Gone on every open watch and ends it (the informer must re-list). */
  expireWatches(): void {
    for (const w of this.watchers) {
      w.res.end(
        JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: 'Expired', message: 'too old resource version', code: 410 } }) + '\n',
      );
    }
    this.watchers.clear();
  }

  /** Sends a BOOKMARK with the current resourceVersion on every open watch. */
  bookmark(): void {
    for (const w of this.watchers) {
      w.res.write(JSON.stringify({ type: 'BOOKMARK', object: { kind: 'Bookmark', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) } } }) + '\n');
    }
  }

  /** Lease writes claiming `identity` fail from now on (as if that replica hung or lost the network). */
  blockLeaseUpdatesFrom(identity: string): void {
    this.blockedHolders.add(identity);
  }

  private readonly blockedHolders = new Set<string>();

  openWatches(): number {
    return this.watchers.size;
  }

  private historyStart = 100;

  private table(namespace: string, kind: string): Map<string, KubeObject> {
    const key = `${namespace}/${kind}`;
    let table = this.objects.get(key);
    if (!table) this.objects.set(key, (table = new Map()));
    return table;
  }

  private emit(collection: string, type: Event['type'], object: KubeObject): void {
    const event = { rv: this.rv, collection, type, object };
    this.history.push(event);
    for (const w of this.watchers) if (w.collection === collection) this.send(w, event);
  }

  private send(w: Watcher, event: Event): void {
    if (w.matches(event.object)) w.res.write(JSON.stringify({ type: event.type, object: event.object }) + '\n');
    // An object that left the selector is reported as deleted.
    else if (event.type === 'MODIFIED') w.res.write(JSON.stringify({ type: 'DELETED', object: event.object }) + '\n');
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const route = COLLECTIONS.map(([re]) => re.exec(url.pathname)).find((m) => m);
    if (!route) return status(res, 404, 'NotFound', `no route ${url.pathname}`);
    const [, namespace, kind, name, statusPath] = route as unknown as [string, string, string, string | undefined, string | undefined];
    const table = this.table(namespace, kind);
    const body = req.method === 'GET' ? undefined : await readJson(req);

    if (kind === 'leases' && name !== undefined && req.method === 'PUT') return this.updateLease(res, namespace, name, body as KubeObject);
    if (kind === 'leases' && name === undefined && req.method === 'POST') {
      const lease = body as KubeObject;
      if (table.has(lease.metadata.name)) return status(res, 409, 'AlreadyExists', 'lease exists');
      if (!validMicroTimes(lease)) return status(res, 400, 'BadRequest', 'MicroTime needs 6 fractional digits');
      return json(res, 201, this.put(namespace, kind, lease));
    }
    if (name !== undefined && req.method === 'GET') {
      const object = table.get(name);
      return object ? json(res, 200, object) : status(res, 404, 'NotFound', `${kind} "${name}" not found`);
    }
    if (statusPath && req.method === 'PATCH') {
      if (req.headers['content-type'] !== 'application/merge-patch+json') return status(res, 415, 'UnsupportedMediaType', 'merge patch only');
      const object = table.get(name!);
      if (!object) return status(res, 404, 'NotFound', `${kind} "${name}" not found`);
      const patched = { ...object, status: mergePatch(object.status ?? {}, (body as KubeObject).status ?? {}) };
      return json(res, 200, this.put(namespace, kind, patched));
    }
    if (name === undefined && req.method === 'GET') {
      const matches = selectorMatcher(url.searchParams.get('labelSelector'), url.searchParams.get('fieldSelector'));
      if (url.searchParams.get('watch') === 'true') return this.watch(req, res, `${namespace}/${kind}`, Number(url.searchParams.get('resourceVersion') || 0), matches);
      const items = [...table.values()].filter(matches);
      return json(res, 200, { kind: LIST_KIND[kind], apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) }, items });
    }
    return status(res, 405, 'MethodNotAllowed', `${req.method} ${url.pathname}`);
  }

  private watch(req: IncomingMessage, res: ServerResponse, collection: string, since: number, matches: (o: KubeObject) => boolean): void {
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders(); // the API server answers at once; events follow as they happen
    if (since < this.historyStart) {
      res.end(JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 } }) + '\n');
      return;
    }
    const watcher: Watcher = { collection, res, matches };
    for (const event of this.history) if (event.collection === collection && event.rv > since) this.send(watcher, event);
    this.watchers.add(watcher);
    req.on('close', () => this.watchers.delete(watcher));
  }

  private updateLease(res: ServerResponse, namespace: string, name: string, lease: KubeObject): void {
    const current = this.table(namespace, 'leases').get(name);
    if (!current) return status(res, 404, 'NotFound', 'no lease');
    if (this.blockedHolders.has(lease['spec']?.holderIdentity)) return status(res, 503, 'ServiceUnavailable', 'unreachable');
    if (lease.metadata.resourceVersion !== current.metadata.resourceVersion) return status(res, 409, 'Conflict', 'the object has been modified');
    if (!validMicroTimes(lease)) return status(res, 400, 'BadRequest', 'MicroTime needs 6 fractional digits');
    json(res, 200, this.put(namespace, 'leases', lease));
  }
}

function validMicroTimes(lease: KubeObject): boolean {
  return ['acquireTime', 'renewTime'].every((f) => lease['spec']?.[f] === undefined || lease['spec'][f] === null || MICROTIME.test(lease['spec'][f]));
}

function selectorMatcher(labelSelector: string | null, fieldSelector: string | null): (o: KubeObject) => boolean {
  const labels = (labelSelector ?? '').split(',').filter(Boolean).map((term) => term.split('='));
  const fields = (fieldSelector ?? '').split(',').filter(Boolean).map((term) => term.split('='));
  return (o) =>
    labels.every(([k, v]) => (v === undefined ? k! in (o.metadata.labels ?? {}) : o.metadata.labels?.[k!] === v)) &&
    fields.every(([k, v]) => (k === 'metadata.name' ? o.metadata.name === v : k === 'metadata.namespace' ? o.metadata.namespace === v : false));
}

function mergePatch(target: any, patch: any): any {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out = { ...(target && typeof target === 'object' && !Array.isArray(target) ? target : {}) };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
}

function json(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function status(res: ServerResponse, code: number, reason: string, message: string): void {
  json(res, code, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason, message, code });
}
