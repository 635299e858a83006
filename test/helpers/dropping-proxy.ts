import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of a real redis-server that can lose one reply on the way back: armed, it
 * forwards the next command whose bytes contain `marker` to Redis (which runs it) and then cuts both
 * connections instead of delivering Redis's successful reply — a reply lost to a network failure.
 */
export class DroppingProxy {
  private readonly server: Server;
  private marker: string | undefined;
  private readonly sockets = new Set<Socket>();
  dropped = 0;

  private constructor(private readonly upstreamPort: number) {
    this.server = createServer((client) => this.relay(client));
  }

  static async start(upstreamPort: number): Promise<DroppingProxy> {
    const proxy = new DroppingProxy(upstreamPort);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  /** Loses the successful reply to the next command containing `marker`. */
  dropNextReplyTo(marker: string): void {
    this.marker = marker;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private relay(client: Socket): void {
    const upstream = connect(this.upstreamPort, '127.0.0.1');
    this.sockets.add(client).add(upstream);
    let awaitingReply = false;
    client.on('data', (chunk) => {
      if (this.marker !== undefined && chunk.includes(this.marker)) {
        awaitingReply = true;
        this.marker = undefined;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      // A RESP error ("-") means the command did not run (say NOSCRIPT): deliver it and keep waiting.
      if (awaitingReply && chunk[0] !== 0x2d) {
        awaitingReply = false;
        this.dropped++;
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  }
}
