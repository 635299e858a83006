import { afterAll, beforeAll } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

export interface RedisServer {
  readonly url: string;
  readonly port: number;
  /** A plain client for inspecting keys in tests. */
  client(): Redis;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** A real redis-server on a free loopback port, keeping nothing on disk. */
export async function startRedisServer(options: { port?: number; extraArgs?: string[] } = {}): Promise<RedisServer> {
  const port = options.port ?? (await freePort());
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning', ...(options.extraArgs ?? [])],
    { stdio: 'ignore' },
  );
  const clients: Redis[] = [];
  const url = `redis://127.0.0.1:${port}`;
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => {});
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await probe.connect();
      await probe.ping();
      break;
    } catch (err) {
      if (Date.now() > deadline || child.exitCode !== null) {
        child.kill('SIGKILL');
        throw new Error(`redis-server did not start on port ${port}: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  probe.disconnect();
  return {
    url,
    port,
    client() {
      const c = new Redis(url);
      clients.push(c);
      return c;
    },
    async stop() {
      for (const c of clients) c.disconnect();
      if (child.exitCode !== null) return;
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      });
    },
  };
}

/** A one-node Redis Cluster (all 16384 slots on one server): it refuses any command or script whose keys span slots. */
export async function startRedisCluster(): Promise<RedisServer & { clusterUrl: string }> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'tw-cluster-'));
  const server = await startRedisServer({
    port,
    extraArgs: ['--cluster-enabled', 'yes', '--cluster-announce-ip', '127.0.0.1', '--cluster-config-file', join(dir, 'nodes.conf'), '--dir', dir],
  });
  const admin = new Redis(server.url);
  await admin.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
  for (let i = 0; i < 100 && !String(await admin.call('CLUSTER', 'INFO')).includes('cluster_state:ok'); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  admin.disconnect();
  return {
    ...server,
    clusterUrl: `redis+cluster://127.0.0.1:${port}`,
    async stop() {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A real Sentinel (redis-server --sentinel) monitoring `master` under the name "mymaster". */
export async function startRedisSentinel(master: RedisServer): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'tw-sentinel-'));
  const conf = join(dir, 'sentinel.conf');
  await writeFile(conf, `port ${port}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor mymaster 127.0.0.1 ${master.port} 1\n`);
  const child = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
  const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
  probe.on('error', () => {});
  for (let i = 0; ; i++) {
    try {
      if (probe.status !== 'ready') await probe.connect();
      const addr = (await probe.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'mymaster')) as string[] | null;
      if (addr?.[1] === String(master.port)) break;
    } catch {
      // not up yet
    }
    if (i > 100) throw new Error('Sentinel did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  probe.disconnect();
  return {
    url: `redis+sentinel://127.0.0.1:${port}/mymaster`,
    async stop() {
      await new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      });
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A real redis-server for the whole test file: started before its tests, stopped after them.
 * Read `.server` inside tests (it exists once beforeAll has run).
 */
export function redisForThisFile(): { readonly server: RedisServer } {
  const holder: { server: RedisServer } = { server: undefined as unknown as RedisServer };
  beforeAll(async () => {
    holder.server = await startRedisServer();
  });
  afterAll(async () => {
    await holder.server?.stop();
  });
  return holder;
}
