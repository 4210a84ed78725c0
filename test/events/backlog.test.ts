import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import pino from 'pino';
import { openStack } from '../helpers/stack.js';
import { waitUntil } from '../helpers/daemon.js';
import { WebhookDispatcher } from '../../daemon/events/dispatcher.js';

/**
 * A backlog bigger than one read of the queue (a receiver that was down for a while, a
 * restart with many events queued) is delivered whole, in order per thread, without any new
 * event having to arrive to wake the dispatcher.
 */
t.test('every queued event of a large backlog is delivered after a start', async (t) => {
  const { store, outbox } = await openStack(t, { push: true });
  const total = 12_500;
  for (let i = 0; i < total; i += 500) {
    const batch = store.batch();
    for (let j = i; j < i + 500; j++) outbox.append(batch, 'message.created', { thread: `t${j % 40}`, n: j }, `t${j % 40}`);
    await batch.write();
  }
  const seen = new Set<number>();
  const last = new Map<string, number>();
  let outOfOrder = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { data: { thread: string; n: number } };
      if ((last.get(body.data.thread) ?? -1) > body.data.n) outOfOrder++;
      last.set(body.data.thread, body.data.n);
      seen.add(body.data.n);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const dispatcher = new WebhookDispatcher(outbox, pino({ level: 'silent' }), {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, secret: 'whsec-backlog', timeoutMs: 5_000, concurrency: 8,
    retry: { attempts: 3, initialDelayMs: 20, maxDelayMs: 100, jitter: 0 },
  });
  await dispatcher.start();
  t.teardown(() => dispatcher.stop());
  await waitUntil(() => seen.size === total, `all ${total} events delivered (got ${seen.size})`, 110_000, 50);
  t.equal(seen.size, total, 'every event arrived');
  t.equal(outOfOrder, 0, 'events of each thread arrived in order');
  t.equal((await outbox.queued()).length, 0, 'nothing is left queued');
});
