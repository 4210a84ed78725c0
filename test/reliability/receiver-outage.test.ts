import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { appendMessage, createMailbox, dovecotEnv } from '../helpers/dovecot.js';
import { startDaemon, waitUntil, WEBHOOK_SECRET, type RunningDaemon } from '../helpers/daemon.js';
import { tempDir } from '../helpers/stack.js';
import { atsOriginal, candidateReply, consentAndGoLive } from '../helpers/recruiter.js';
import { retrySchedule, type RetryPolicy } from '../../daemon/events/retry.js';
import { schema } from '../../daemon/config/schema.js';

/**
 * The webhook receiver goes down — it answers 503, then stops listening, then accepts and
 * never answers — for the equivalent of ten minutes of the default retry schedule, while
 * candidates keep replying in several threads, and the daemon itself is restarted in the
 * middle of it. Nothing is lost: every event is delivered once the receiver is back, none is
 * marked failed, and each thread's events arrive in commit order.
 */

t.setTimeout(180_000);

const DEFAULT_RETRY: RetryPolicy = {
  attempts: schema.webhooks.retry.attempts.default,
  initialDelayMs: schema.webhooks.retry.initialDelayMs.default,
  maxDelayMs: schema.webhooks.retry.maxDelayMs.default,
  jitter: schema.webhooks.retry.jitter.default,
};
/** The test runs the default schedule 100 times faster: 10 minutes of outage become 6 s. */
const SCALE = 100;
const OUTAGE_MS = 600_000 / SCALE;

t.test('the default retry schedule outlasts a ten-minute outage', async (t) => {
  const delays = retrySchedule(DEFAULT_RETRY);
  const shortest = delays.map((d) => d * (1 - DEFAULT_RETRY.jitter));
  const covered = shortest.reduce((a, b) => a + b, 0);
  t.ok(covered > 600_000, `even with the most jitter, ${DEFAULT_RETRY.attempts} attempts span ${Math.round(covered / 60_000)} minutes`);
});

/** A receiver that can answer, refuse with 503, hang, or be down altogether (not listening). */
async function outageReceiver(t: Test) {
  let mode: 'up' | '503' | 'hang' = 'up';
  const delivered: Array<{ id: string; thread: string }> = [];
  const hung: http.ServerResponse[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: string; data: { threadId?: string; userId?: string } };
      if (mode === 'hang') return void hung.push(res);
      if (mode === '503') return void res.writeHead(503).end();
      delivered.push({ id: body.id, thread: body.data.threadId ?? `mbx:${body.data.userId}` });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const stopListening = () => {
    for (const res of hung.splice(0)) res.destroy();
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  };
  t.teardown(stopListening);
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    delivered,
    setMode: (m: typeof mode) => {
      mode = m;
    },
    down: stopListening,
    up: () => new Promise<void>((r) => server.listen(port, '127.0.0.1', r)),
  };
}

t.test('a receiver down for ten minutes of retries loses nothing and keeps thread order', async (t) => {
  const login = await createMailbox('outage');
  const env = dovecotEnv();
  const rx = await outageReceiver(t);
  const originals = [0, 1, 2].map(() => atsOriginal(login.address));
  for (const o of originals) await appendMessage(login, 'Sent', o.raw, ['\\Seen']);
  const storeDir = path.join(tempDir(t), 'store');
  const overrides = {
    webhooks: {
      url: rx.url, secret: WEBHOOK_SECRET, timeoutMs: 200, concurrency: 8,
      retry: { ...DEFAULT_RETRY, initialDelayMs: DEFAULT_RETRY.initialDelayMs / SCALE, maxDelayMs: DEFAULT_RETRY.maxDelayMs / SCALE },
    },
    sync: { tlsCaFile: env.caFile },
  };
  let d: RunningDaemon = await startDaemon(t, { storeDir, overrides });
  await consentAndGoLive(d, login, { host: env.host, port: env.port });
  const allDelivered = async () => {
    const feed = await d.api<{ events: Array<{ id: string; type: string; cursor: string; delivery: { status: string } }> }>('GET', '/v1/events?limit=1000');
    return feed.body.events.every((e) => e.delivery.status === 'delivered') ? feed.body.events : null;
  };
  await waitUntil(allDelivered, 'the originals delivered');
  const deliveredBefore = rx.delivered.length;

  const replies: string[] = [];
  const reply = async (i: number) => {
    const r = candidateReply(login.address, originals[i]!.messageId, `t${i}-${replies.length}`);
    replies.push(r.messageId);
    await appendMessage(login, 'INBOX', r.raw);
  };
  /** Waits until the daemon has stored (and queued) the replies appended so far. */
  const stored = () => waitUntil(async () => {
    const feed = await d.api<{ events: Array<{ type: string }> }>('GET', '/v1/events?limit=1000');
    return feed.body.events.filter((e) => e.type === 'message.created').length === 3 + replies.length;
  }, 'the replies stored');

  const outageStart = Date.now();
  rx.setMode('503');
  for (const i of [0, 1, 2, 0]) await reply(i);
  await stored();
  await rx.down();
  for (const i of [1, 2, 0]) await reply(i);
  await stored();
  // the daemon restarts in the middle of the outage: queued events wait in the store
  await d.stop();
  d = await startDaemon(t, { storeDir, overrides });
  for (const i of [2, 1]) await reply(i);
  await stored();
  await rx.up();
  rx.setMode('hang');
  await new Promise((r) => setTimeout(r, Math.max(0, outageStart + OUTAGE_MS - Date.now())));
  t.equal(rx.delivered.length, deliveredBefore, 'nothing was delivered during the outage');
  rx.setMode('up');

  const events = await waitUntil(allDelivered, 'every event delivered after the outage', 60_000);
  t.equal(events.filter((e) => e.type === 'message.created').length, 3 + replies.length, 'the originals and every reply: nothing lost');
  t.same(events.filter((e) => e.delivery.status === 'failed'), [], 'no event failed');
  const deliveredIds = new Set(rx.delivered.map((w) => w.id));
  t.same(events.filter((e) => !deliveredIds.has(e.id)).map((e) => e.id), [], 'every event reached the receiver');
  const seq = new Map(events.map((e) => [e.id, Number(e.cursor)]));
  const byThread = new Map<string, number[]>();
  const first = new Set<string>();
  for (const w of rx.delivered) {
    if (first.has(w.id)) continue;
    first.add(w.id);
    byThread.set(w.thread, [...(byThread.get(w.thread) ?? []), seq.get(w.id)!]);
  }
  for (const [thread, seqs] of byThread) t.same(seqs, [...seqs].sort((a, b) => a - b), `${thread}: events in commit order`);
});
