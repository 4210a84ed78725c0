import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import fc from 'fast-check';
import pino from 'pino';
import type { Test } from 'tap';
import { openStack } from '../helpers/stack.js';
import { waitUntil } from '../helpers/daemon.js';
import { WebhookDispatcher } from '../../daemon/events/dispatcher.js';
import { retryDelay, retrySchedule, type RetryPolicy } from '../../daemon/events/retry.js';
import { verifySignature } from '../../daemon/events/signature.js';

/**
 * The webhook dispatcher against a real HTTP receiver on loopback: retries until the receiver
 * accepts, events of one thread in commit order whatever fails, other threads flowing while
 * one is stuck, `failed` after the last attempt, and redelivery.
 */

const SECRET = 'whsec-dispatch-3c1e';
const fast: RetryPolicy = { attempts: 4, initialDelayMs: 20, maxDelayMs: 200, jitter: 0.2 };

interface Hit {
  id: string;
  thread: string;
  n: number;
  signed: boolean;
  status: number;
}

/** A receiver whose answer to each delivery is decided by `respond` (a number, or 'hang'); 3xx answers point at /elsewhere. */
async function receiver(t: Test, respond: (body: { id: string; data: { thread: string; n: number } }, attempt: number) => number | 'hang') {
  const hits: Hit[] = [];
  const attempts = new Map<string, number>();
  const hung: http.ServerResponse[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const body = JSON.parse(raw) as { id: string; data: { thread: string; n: number } };
      const attempt = (attempts.get(body.id) ?? 0) + 1;
      attempts.set(body.id, attempt);
      const answer = respond(body, attempt);
      const signed = verifySignature(SECRET, String(req.headers['x-mailsync-signature']), raw);
      if (answer === 'hang') {
        hung.push(res);
        return;
      }
      hits.push({ id: body.id, thread: body.data.thread, n: body.data.n, signed, status: answer });
      res.writeHead(answer, answer >= 300 && answer < 400 ? { location: '/elsewhere' } : {}).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const res of hung) res.destroy();
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, hits, attempts, hung };
}

async function setup(t: Test, url: string, retry: RetryPolicy = fast, concurrency = 4, timeoutMs = 2_000) {
  const stack = await openStack(t, { push: true });
  const dispatcher = new WebhookDispatcher(stack.outbox, pino({ level: 'silent' }), { url, secret: SECRET, timeoutMs, concurrency, retry });
  t.teardown(() => dispatcher.stop(500));
  /** Commits events the way the daemon does: inside the store lock, one batch each. */
  const emit = (thread: string, n: number) =>
    stack.store.exclusive(async () => {
      const batch = stack.store.batch();
      const e = stack.outbox.append(batch, 'message.created', { thread, n }, thread);
      await batch.write();
      return e;
    });
  return { ...stack, dispatcher, emit };
}

t.test('a receiver that fails twice gets the event on the third attempt, signed each time', async (t) => {
  const rx = await receiver(t, (_b, attempt) => (attempt <= 2 ? 500 : 204));
  const s = await setup(t, rx.url);
  await s.dispatcher.start();
  const e = await s.emit('t1', 1);
  await waitUntil(() => rx.hits.some((h) => h.status === 204), 'the successful delivery');
  t.same(rx.hits.map((h) => h.status), [500, 500, 204], 'two refusals, then delivered');
  t.ok(rx.hits.every((h) => h.signed), 'every attempt carries a valid signature');
  const stored = await waitUntil(async () => {
    const ev = await s.outbox.get(e.seq);
    return ev?.status === 'delivered' ? ev : null;
  }, 'the event marked delivered');
  t.equal(stored.attempts, 3);
  t.same(await s.outbox.queued(), [], 'nothing left to deliver');
});

t.test('events of one thread arrive in commit order whatever fails; threads do not wait for each other', async (t) => {
  // a deterministic mix of refusals: every third first attempt fails, some twice
  const rx = await receiver(t, (b, attempt) => ((b.data.n % 3 === 0 && attempt === 1) || (b.data.n % 5 === 0 && attempt <= 2) ? 503 : 200));
  const s = await setup(t, rx.url);
  await s.dispatcher.start();
  const threads = ['ta', 'tb', 'tc'];
  let n = 0;
  for (let i = 0; i < 10; i++) for (const th of threads) await s.emit(th, ++n);
  await waitUntil(() => rx.hits.filter((h) => h.status === 200).length === n, `all ${n} events delivered`, 20_000);
  for (const th of threads) {
    const delivered = rx.hits.filter((h) => h.thread === th && h.status === 200).map((h) => h.n);
    t.same(delivered, [...delivered].sort((a, b) => a - b), `thread ${th}: delivered in commit order`);
    const attempted = rx.hits.filter((h) => h.thread === th).map((h) => h.n);
    // a later event of a thread is never even attempted before an earlier one is delivered
    for (let i = 1; i < attempted.length; i++) t.ok(attempted[i]! >= attempted[i - 1]!, `thread ${th}: attempt ${i} does not overtake`);
  }
  t.equal(new Set(rx.hits.filter((h) => h.status === 200).map((h) => h.id)).size, n, 'each event delivered once');
});

t.test('one stalled thread does not hold up the others (several deliveries in flight)', async (t) => {
  const rx = await receiver(t, (b) => (b.data.thread === 'stuck' ? 'hang' : 200));
  const s = await setup(t, rx.url, { ...fast, attempts: 50 }, 4);
  await s.dispatcher.start();
  await s.emit('stuck', 1);
  await s.emit('stuck', 2);
  for (let i = 3; i <= 12; i++) await s.emit(`free-${i % 3}`, i);
  await waitUntil(() => rx.hits.length === 10, 'the ten events of the other threads', 10_000);
  t.same(rx.hits.map((h) => h.n).sort((a, b) => a - b), [3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 'all other threads delivered');
  t.equal(rx.hung.length, 1, 'the stalled thread has exactly one delivery in flight, its second event waits behind it');
});

t.test('after the last attempt the event is failed, stays listed, and can be redelivered', async (t) => {
  let accept = false;
  const rx = await receiver(t, () => (accept ? 200 : 500));
  const s = await setup(t, rx.url, { ...fast, attempts: 3 });
  await s.dispatcher.start();
  const e = await s.emit('t9', 1);
  const failed = await waitUntil(async () => {
    const ev = await s.outbox.get(e.seq);
    return ev?.status === 'failed' ? ev : null;
  }, 'the event marked failed');
  t.equal(failed.attempts, 3, 'exactly the configured number of attempts');
  t.match(failed.lastError, /HTTP 500/, 'the last error says what the receiver answered');
  t.equal(rx.hits.length, 3);
  const listed = await s.outbox.list(0, 10, (ev) => ev.status === 'failed');
  t.same(listed.map((ev) => ev.id), [e.id], 'the failed event is listed');
  const next = await s.emit('t9', 2);
  await waitUntil(() => rx.hits.some((h) => h.n === 2), 'the thread moves on after a failed event');
  accept = true;
  await s.dispatcher.redeliver(failed);
  await waitUntil(() => rx.hits.some((h) => h.n === 1 && h.status === 200), 'the redelivered event');
  // the receiver has answered; the dispatcher records the outcome right after
  t.ok(await waitUntil(async () => (await s.outbox.get(e.seq))?.status === 'delivered', 'the redelivery recorded as delivered'));
  t.ok(next.id !== e.id);
});

t.test('a redirect is not followed and a receiver that does not answer in time is tried again; the stored error says why', async (t) => {
  const rx = await receiver(t, (_b, attempt) => (attempt === 1 ? 302 : attempt === 2 ? 'hang' : 200));
  // retries far apart compared with the polling below, so each recorded error is seen
  const s = await setup(t, rx.url, { attempts: 5, initialDelayMs: 300, maxDelayMs: 1_000, jitter: 0.2 }, 4, 300);
  const errors: string[] = [];
  await s.dispatcher.start();
  const e = await s.emit('t7', 1);
  await waitUntil(async () => {
    const ev = await s.outbox.get(e.seq);
    if (ev?.lastError && errors.at(-1) !== ev.lastError) errors.push(ev.lastError);
    return ev?.status === 'delivered' ? ev : null;
  }, 'the event delivered on the third attempt', 10_000, 5);
  t.same(rx.hits.map((h) => h.status), [302, 200], 'the redirect was answered, the hung attempt never was, the third was accepted');
  t.equal((await s.outbox.get(e.seq))!.attempts, 3, 'three attempts, all to the configured URL');
  t.match(errors, [/HTTP 302/, /no answer within 300 ms/], 'each failed attempt was recorded with its reason');
});

t.test('events written while the dispatcher was stopped are delivered when it starts', async (t) => {
  const rx = await receiver(t, () => 200);
  const s = await setup(t, rx.url);
  await s.emit('t1', 1);
  await s.emit('t1', 2);
  t.equal(rx.hits.length, 0, 'nothing pushed before start');
  await s.dispatcher.start();
  await waitUntil(() => rx.hits.length === 2, 'both events');
  t.same(rx.hits.map((h) => h.n), [1, 2]);
});

t.test('retry delays grow exponentially, are capped, and jitter only shortens them', async (t) => {
  const policy: RetryPolicy = { attempts: 12, initialDelayMs: 1_000, maxDelayMs: 3_600_000, jitter: 0.2 };
  t.same(retrySchedule(policy).slice(0, 5), [1_000, 2_000, 4_000, 8_000, 16_000], 'doubling from the initial delay');
  t.equal(retrySchedule({ ...policy, maxDelayMs: 5_000 }).at(-1), 5_000, 'capped at maxDelayMs');
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 40 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (attempt, r) => {
      const base = retryDelay({ ...policy, jitter: 0 }, attempt);
      const d = retryDelay(policy, attempt, () => r);
      return d <= base && d >= Math.floor(base * (1 - policy.jitter)) && d <= policy.maxDelayMs;
    }),
  );
});
