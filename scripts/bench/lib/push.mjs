// Push latency, product and floor in one pass: a candidate's reply is APPENDed to a watched
// INBOX; the floor (bare imapflow IDLE clients, lib/floor-idle.mjs) reports EXISTS and the
// daemon POSTs message.created to our receiver. Both are timed from the same moment: just
// before the APPEND command is sent.
import { fork } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ImapFlow } from 'imapflow';
import { sleep, until } from './harness.mjs';

export const now = () => performance.timeOrigin + performance.now();

/** The floor process watching `logins`; resolves once all are in IDLE. */
export async function startFloor(env, logins, timeoutMs = 600_000) {
  const proc = fork(path.join(path.dirname(fileURLToPath(import.meta.url)), 'floor-idle.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const listeners = new Set();
  let ready = null;
  proc.on('message', (m) => {
    if (m.type === 'ready') ready = m;
    else if (m.type === 'exists') for (const fn of listeners) fn(m);
  });
  proc.send({ type: 'start', env, logins });
  await until(() => ready, 'the floor clients to connect', timeoutMs, 100);
  if (ready.failed) throw new Error(`${ready.failed} of ${logins.length} floor clients could not connect`);
  return {
    pid: proc.pid,
    onExists: (fn) => listeners.add(fn),
    stop: () => new Promise((r) => {
      proc.once('exit', r);
      proc.send({ type: 'stop' });
      setTimeout(() => proc.kill('SIGKILL'), 10_000).unref();
    }),
  };
}

/** An IMAP connection that APPENDs as `login`; closed with `close()`. */
export async function appender(env, login) {
  const client = new ImapFlow({ host: env.host, port: env.port, secure: false, doSTARTTLS: false, logger: false, auth: login, disableAutoIdle: true });
  client.on('error', () => {});
  await client.connect();
  return {
    /** Appends and returns the time just before the command was sent. */
    async append(raw) {
      const t0 = now();
      await client.append('INBOX', raw, [], new Date());
      return t0;
    },
    close: () => client.logout().catch(() => client.close()),
  };
}

/**
 * Sends `count` replies one after another (`next(i)` gives {login, raw, messageId} and the
 * `append` to use), waiting for the floor's EXISTS and the daemon's webhook (either may be
 * null: not measured) before the next. Returns latencies in ms: { product: [], floor: [], lost }.
 */
export async function measurePush({ count, next, floor, webhooks, log, gapMs = [50, 250], timeoutMs = 30_000, label = '' }) {
  const product = [], floorMs = [];
  let lost = 0;
  let waitingExists = null;
  floor?.onExists((m) => {
    if (waitingExists && m.user === waitingExists.user && !waitingExists.at) waitingExists.at = m.at;
  });
  for (let i = 0; i < count; i++) {
    const { login, raw, messageId, append } = await next(i);
    waitingExists = { user: login.user, at: 0 };
    const hook = webhooks ? webhooks.expect(messageId) : { at: 0 };
    const t0 = await append(raw);
    const w = waitingExists;
    try {
      await until(() => (!floor || w.at) && (!webhooks || hook.at), `EXISTS and webhook for message ${i}`, timeoutMs, 2);
      if (process.env.BENCH_DEBUG) log?.(`message ${i}: floor ${(w.at - t0).toFixed(1)} ms, product ${(hook.at - t0).toFixed(1)} ms`);
      if (floor) floorMs.push(w.at - t0);
      if (webhooks) product.push(hook.at - t0);
    } catch {
      lost++;
      log?.(`message ${i}: ${w.at ? '' : 'no EXISTS'} ${hook.at ? '' : 'no webhook'} within ${timeoutMs / 1000} s`);
    }
    waitingExists = null;
    if ((i + 1) % 50 === 0) log?.(`${label}${i + 1}/${count} replies measured`);
    // a varied pause, so arrivals never line up with any timer of the daemon's
    await sleep(gapMs[0] + Math.random() * (gapMs[1] - gapMs[0]));
  }
  return { product, floor: floorMs, lost };
}

/** Matches webhook arrivals to the Message-IDs a scenario waits for. */
export function webhookWaiter() {
  const waiting = new Map();
  return {
    expect(messageId) {
      const entry = { at: 0 };
      waiting.set(messageId, entry);
      return entry;
    },
    onEvent(body, at) {
      if (body?.type !== 'message.created') return;
      const entry = waiting.get(body.data?.message?.messageId);
      if (entry && !entry.at) {
        entry.at = performance.timeOrigin + at;
        waiting.delete(body.data.message.messageId);
      }
    },
  };
}
