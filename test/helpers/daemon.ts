import http from 'node:http';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import type { Test } from 'tap';
import { loadConfig, type Config } from '../../daemon/config/load.js';
import { createLogger } from '../../daemon/ops/logger.js';
import { createDaemon, type Daemon } from '../../daemon/daemon.js';
import { tempDir } from './stack.js';
import { daemonLogFile, logFileSink, noteSecret, noteSecretsIn } from './log-capture.js';

export const TOKEN = 'test-token-5b0c';
export const WEBHOOK_SECRET = 'whsec-test-91a7';

/** Polls until `fn` returns a truthy value; fails with `what` after the deadline. No fixed sleeps. */
export async function waitUntil<T>(fn: () => Promise<T> | T, what: string, timeoutMs = 15_000, everyMs = 25): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface ReceivedWebhook {
  headers: http.IncomingHttpHeaders;
  raw: string;
  body: { id: string; type: string; createdAt: string; data: Record<string, unknown> };
  at: number;
}

/**
 * A real HTTP receiver on loopback; `respond` decides the status of each delivery, or
 * 'hang' to accept the request and never answer (a receiver stuck behind a dead backend).
 */
export async function startReceiver(t: Test, respond: (w: ReceivedWebhook) => number | 'hang' = () => 200) {
  const received: ReceivedWebhook[] = [];
  /** Every delivery attempt, whatever the answer. */
  const attempts: ReceivedWebhook[] = [];
  const hung: http.ServerResponse[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const w: ReceivedWebhook = { headers: req.headers, raw, body: JSON.parse(raw), at: Date.now() };
      attempts.push(w);
      const status = respond(w);
      if (status === 'hang') {
        hung.push(res);
        return;
      }
      if (status >= 200 && status < 300) received.push(w);
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const res of hung) res.destroy();
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
  return {
    url,
    received,
    attempts,
    hung,
    ofType: (type: string) => received.filter((w) => w.body.type === type),
    waitFor: (pred: (w: ReceivedWebhook) => boolean, what: string, timeoutMs = 15_000) => waitUntil(() => received.find(pred), what, timeoutMs),
  };
}

export interface RunningDaemon {
  daemon: Daemon;
  config: Config;
  logs: string[];
  storeDir: string;
  api: <T = Record<string, unknown>>(method: string, url: string, opts?: { body?: unknown; actingUser?: string; role?: string; token?: string | null; headers?: Record<string, string> }) => Promise<{ status: number; body: T; headers: Headers; raw: Buffer }>;
  stop: () => Promise<void>;
}

/** Starts the daemon in this process on a fresh store (or `storeDir`), API on a free port. */
export async function startDaemon(t: Test, opts: { overrides?: Record<string, unknown>; storeDir?: string; smtp?: boolean } = {}): Promise<RunningDaemon> {
  const storeDir = opts.storeDir ?? path.join(tempDir(t), 'store');
  const { config } = loadConfig({
    env: {},
    overrides: deepMerge({
      api: { port: 0, tokens: [TOKEN] },
      store: { path: storeDir, keyFile: path.join(path.dirname(storeDir), 'master.key') },
      ats: { messageIdDomains: ['ats.example.net'] },
      sync: { allowPlaintext: true, sentPollSeconds: 1, backoff: { minMs: 100, maxMs: 2_000, resetAfterSeconds: 5 } },
      smtp: { submission: { port: 0 }, intake: { port: 0 } },
      log: { level: 'debug' },
    }, opts.overrides ?? {}),
  });
  // what the daemon was given is what its log must never show (test/setup/stop-servers.ts)
  noteSecretsIn(config);
  noteSecret('encryption key', config.store.key);
  const logs: string[] = [];
  const file = logFileSink(daemonLogFile('daemon'));
  const sink = new Writable({
    write(chunk, _enc, cb) {
      file.write(chunk as Buffer);
      logs.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  // `smtp`: the submission and intake listeners on free ports (config port 0 disables them)
  const daemon = createDaemon(config, createLogger({ level: config.log.level, pretty: false }, sink), opts.smtp ? { smtpPorts: { submission: 0, intake: 0 } } : {});
  await daemon.start();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await daemon.stop();
  };
  t.teardown(stop);
  t.teardown(() => file.close());
  // On a failure the daemon's own log is the first thing anyone needs: print its tail.
  t.teardown(() => {
    if (process.env.MAILSYNC_TEST_LOGS === '1' || !t.passing()) {
      console.error(`--- daemon log (last 80 of ${logs.length} lines) ---\n${logs.slice(-80).join('\n')}`);
    }
  });
  const api: RunningDaemon['api'] = async (method, url, o = {}) => {
    noteSecretsIn(typeof o.body === 'string' ? parseOrNull(o.body) : o.body);
    const headers: Record<string, string> = { ...(o.headers ?? {}) };
    if (o.token !== null) headers.authorization = `Bearer ${o.token ?? TOKEN}`;
    if (o.actingUser) headers['x-acting-user'] = o.actingUser;
    if (o.role) headers['x-acting-role'] = o.role;
    if (o.body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
    const res = await fetch(`${daemon.apiUrl}${url}`, { method, headers, body: o.body === undefined ? undefined : typeof o.body === 'string' ? o.body : JSON.stringify(o.body) });
    const raw = Buffer.from(await res.arrayBuffer());
    let body: unknown = null;
    if ((res.headers.get('content-type') ?? '').includes('json') && raw.length) body = JSON.parse(raw.toString('utf8'));
    return { status: res.status, body: body as never, headers: res.headers, raw };
  };
  return { daemon, config, logs, storeDir, api, stop };
}

function parseOrNull(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const av = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && av && typeof av === 'object' && !Array.isArray(av) ? deepMerge(av as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}
