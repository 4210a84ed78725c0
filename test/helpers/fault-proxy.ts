import net from 'node:net';
import type { Test } from 'tap';

/**
 * A TCP proxy between the daemon and a real server that can misbehave the way networks do:
 * - `drop()`: every open connection is reset (RST), as when a router or the server dies;
 * - `refuse(true)`: new connections are reset at once (a server that is down);
 * - `blackhole()`: open and new connections stay open but every byte in both directions is
 *   swallowed, as when a NAT box forgets a flow — no FIN, no RST, just silence. `heal()` lets
 *   new connections through again; a flow that was blackholed stays dead, as it does behind
 *   a NAT that has forgotten it;
 * - `delay(ms)`: every chunk is held back for `ms` in both directions, order kept.
 * `injectToClients` writes server-side lines into open connections (an unsolicited BYE).
 */

interface Flow {
  client: net.Socket;
  upstream: net.Socket | null;
  black: boolean;
}

export class FaultProxy {
  readonly #server: net.Server;
  readonly #target: { host: string; port: number };
  readonly #flows = new Set<Flow>();
  #black = false;
  #refusing = false;
  #delayMs = 0;
  /** Connections accepted since start (including refused and blackholed ones). */
  accepted = 0;

  private constructor(target: { host: string; port: number }) {
    this.#target = target;
    this.#server = net.createServer((client) => this.#accept(client));
  }

  static async start(t: Test, target: { host: string; port: number }): Promise<FaultProxy> {
    const proxy = new FaultProxy(target);
    await new Promise<void>((resolve) => proxy.#server.listen(0, '127.0.0.1', resolve));
    t.teardown(() => proxy.close());
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  /** Connections currently open, blackholed ones included. */
  get openFlows(): number {
    return this.#flows.size;
  }

  /** Flows that pass bytes right now. */
  get liveFlows(): number {
    return [...this.#flows].filter((f) => !f.black && f.upstream).length;
  }

  #accept(client: net.Socket): void {
    this.accepted++;
    client.on('error', () => {});
    if (this.#refusing) {
      client.resetAndDestroy();
      return;
    }
    const flow: Flow = { client, upstream: null, black: this.#black };
    this.#flows.add(flow);
    client.on('close', () => {
      this.#flows.delete(flow);
      flow.upstream?.destroy();
    });
    if (flow.black) {
      client.resume(); // swallow whatever the client sends
      return;
    }
    const upstream = net.connect(this.#target.port, this.#target.host);
    flow.upstream = upstream;
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => {
      if (!flow.black) client.destroy();
    });
    this.#pipe(flow, client, upstream);
    this.#pipe(flow, upstream, client);
  }

  /** Forwards chunks from one side to the other unless the flow is blackholed, with the configured delay. */
  #pipe(flow: Flow, from: net.Socket, to: net.Socket): void {
    let chain = Promise.resolve();
    from.on('data', (chunk: Buffer) => {
      if (flow.black) return;
      const delay = this.#delayMs;
      chain = chain.then(async () => {
        if (delay > 0) await new Promise((r) => setTimeout(r, delay));
        if (!flow.black && !to.destroyed) to.write(chunk);
      });
    });
  }

  /** Resets every open connection. */
  drop(): void {
    for (const f of this.#flows) {
      f.client.resetAndDestroy();
      f.upstream?.destroy();
    }
    this.#flows.clear();
  }

  /** While on, new connections are reset at once. */
  refuse(on: boolean): void {
    this.#refusing = on;
  }

  /** Silences every open flow for good and every new one until `heal()`. */
  blackhole(): void {
    this.#black = true;
    for (const f of this.#flows) {
      f.black = true;
      f.client.resume();
      // the server side of a forgotten flow eventually gives up; the client is never told
      f.upstream?.destroy();
      f.upstream = null;
    }
  }

  /** New connections pass again (blackholed flows stay silent). */
  heal(): void {
    this.#black = false;
  }

  delay(ms: number): void {
    this.#delayMs = ms;
  }

  /** Writes raw bytes to every passing client connection, as if the server had sent them. */
  injectToClients(text: string): number {
    let n = 0;
    for (const f of this.#flows) {
      if (f.black || !f.upstream) continue;
      f.client.write(text);
      n++;
    }
    return n;
  }

  async close(): Promise<void> {
    for (const f of this.#flows) {
      f.client.destroy();
      f.upstream?.destroy();
    }
    this.#flows.clear();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
