import http from 'node:http';
import https from 'node:https';

/**
 * The HTTP side of webhook delivery: POSTs over a keep-alive agent with at most `concurrency`
 * connections to the receiver. node:http rather than fetch: on the same deliveries fetch costs
 * about three times the CPU per request (web streams, abort signals, its own request objects),
 * which bounded a backlog's throughput. Redirects are not followed: only a `2xx` answer is a
 * delivery, anything else is retried.
 */

export interface WebhookClientOptions {
  concurrency: number;
  /** The whole request, from connecting to the end of the answer. */
  timeoutMs: number;
}

class DeliveryTimeout extends Error {}

export class WebhookClient {
  readonly #url: URL;
  readonly #request: typeof http.request;
  readonly #agent: http.Agent;
  readonly #timeoutMs: number;
  readonly #inFlight = new Set<http.ClientRequest>();

  constructor(url: string, opts: WebhookClientOptions) {
    this.#url = new URL(url);
    const secure = this.#url.protocol === 'https:';
    this.#request = secure ? https.request : http.request;
    const agentOpts = { keepAlive: true, maxSockets: opts.concurrency, maxFreeSockets: opts.concurrency };
    this.#agent = secure ? new https.Agent(agentOpts) : new http.Agent(agentOpts);
    this.#timeoutMs = opts.timeoutMs;
  }

  /** POSTs `body`; resolves with null when the receiver answered 2xx, else with why not. Never rejects. */
  post(body: string, headers: Record<string, string>): Promise<string | null> {
    return new Promise((resolve) => {
      let settled = false;
      const done = (error: string | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#inFlight.delete(req);
        resolve(error);
      };
      const req = this.#request(this.#url, {
        method: 'POST', agent: this.#agent,
        headers: { ...headers, 'content-length': Buffer.byteLength(body) },
      }, (res) => {
        const status = res.statusCode ?? 0;
        // the answer is read to its end so the connection can carry the next delivery
        res.on('error', (err) => done(describe(err, this.#timeoutMs)));
        res.on('end', () => done(status >= 200 && status <= 299 ? null : `the receiver answered HTTP ${status}`));
        res.on('close', () => done(`the receiver answered HTTP ${status} but the connection closed before the answer ended`));
        res.resume();
      });
      const timer = setTimeout(() => req.destroy(new DeliveryTimeout()), this.#timeoutMs);
      req.on('error', (err) => done(describe(err, this.#timeoutMs)));
      this.#inFlight.add(req);
      req.end(body);
    });
  }

  /** Ends the requests in flight (they resolve as failed) and the idle connections. */
  close(): void {
    for (const req of this.#inFlight) req.destroy(new Error('mailsync is stopping'));
    this.#agent.destroy();
  }
}

function describe(err: Error, timeoutMs: number): string {
  if (err instanceof DeliveryTimeout) return `no answer within ${timeoutMs} ms`;
  return `request failed: ${(err as NodeJS.ErrnoException).code ?? err.message}`;
}
