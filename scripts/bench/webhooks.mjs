// Scenario 4: webhook throughput. A store is filled with queued message.created events
// (through the store layer), the built daemon starts and pushes them to a receiver on
// loopback. The floor is a bare sender POSTing bodies of the same size with the same number
// of requests in flight. A second pass stalls every delivery of one thread: the others must
// keep flowing.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { WEBHOOK_SECRET, machineLoad, median, row, scratchDir, startDaemon, startReceiver, until } from './lib/harness.mjs';
import { openStack } from './lib/stack.mjs';

export const name = 'webhooks';
export const describe = 'webhook events per second to a local receiver against a bare HTTP sender; one stalled thread must not hold up the others';

const THREADS = 500;
const CONCURRENCY = 8; // the daemon's default webhooks.concurrency; the floor uses the same

function eventData(i) {
  const threadId = `t_bench${String(i % THREADS).padStart(4, '0')}`;
  return {
    userId: 'u-hooks', threadId, candidateIds: [`c-${i % THREADS}`], secret: false,
    message: {
      id: `m_bench${i}`, threadId, messageId: `<reply-${i}@mail.example.org>`, inReplyTo: `<start-${i % THREADS}@ats.example.net>`,
      references: [`<start-${i % THREADS}@ats.example.net>`], date: new Date(1_767_225_600_000 + i * 1000).toISOString(), direction: 'inbound',
      from: { address: `candidate${i % THREADS}@example.org`, name: 'Casey Candidate' }, to: [{ address: 'robin@example.com', name: 'Robin Recruiter' }], cc: [],
      subject: 'Re: Your application: Backend Engineer', snippet: 'Thanks for the invitation, Tuesday at ten works well for me and I will bring the portfolio we talked about.',
      attachments: [{ id: 'a_1', filename: 'CV.pdf', contentType: 'application/pdf', size: 84211 }], seenIn: [{ userId: 'u-hooks', folder: 'INBOX' }],
    },
  };
}

async function queuedStore(dir, count) {
  const { store, outbox } = await openStack(dir, { push: true });
  for (let i = 0; i < count; i += 500) {
    const batch = store.batch();
    for (let j = i; j < Math.min(count, i + 500); j++) outbox.append(batch, 'message.created', eventData(j), eventData(j).threadId);
    await batch.write();
  }
  await store.close();
}

/** Starts the daemon on a store of `count` queued events; resolves with arrival figures. */
async function productPass(count, { stallThread = null, log }) {
  const dir = scratchDir(name);
  await queuedStore(dir, count);
  const arrivals = [];
  const lastSeq = new Map();
  let outOfOrder = 0, bodyBytes = 0;
  const stalled = [];
  const receiver = await startReceiver({
    respond: (body) => {
      if (stallThread && body?.data?.threadId === stallThread) return new Promise((r) => stalled.push(() => r(503)));
      return 200;
    },
    onEvent: (body, at, bytes) => {
      arrivals.push(at);
      bodyBytes += bytes;
      const n = Number(body.data.message.id.slice('m_bench'.length));
      if ((lastSeq.get(body.data.threadId) ?? -1) > n) outOfOrder++;
      lastSeq.set(body.data.threadId, n);
    },
  });
  const expected = stallThread ? count - Math.ceil((count - Number(stallThread.slice(7))) / THREADS) : count;
  const daemon = await startDaemon({ dir, overrides: { webhooks: { url: receiver.url, secret: WEBHOOK_SECRET, concurrency: CONCURRENCY } } });
  try {
    await until(() => arrivals.length >= expected, `${expected} webhooks`, 600_000, 20);
    const ms = arrivals[arrivals.length - 1] - arrivals[0];
    log(`${arrivals.length} events in ${Math.round(ms)} ms${stallThread ? ` with ${stallThread} stalled` : ''}`);
    return { perSecond: (arrivals.length - 1) / (ms / 1000), outOfOrder, avgBody: Math.round(bodyBytes / arrivals.length) };
  } finally {
    for (const release of stalled) release();
    await daemon.stop();
    await receiver.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function floorPass(count, bodyBytes) {
  let done = 0;
  const receiver = await startReceiver({ onEvent: () => { done++; } });
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [path.join(path.dirname(new URL(import.meta.url).pathname), 'lib/floor-http.mjs'), receiver.url, String(count), String(CONCURRENCY), String(bodyBytes), WEBHOOK_SECRET]);
    const { ms } = JSON.parse(stdout);
    if (done !== count) throw new Error(`the floor delivered ${done} of ${count}`);
    return count / (ms / 1000);
  } finally {
    await receiver.close();
  }
}

export default async function run({ quick, log }) {
  const count = quick ? 3_000 : 20_000;
  const runs = quick ? 1 : 3;
  const product = [], floor = [];
  let outOfOrder = 0, body = 1500;
  for (let i = 0; i < runs; i++) {
    const p = await productPass(count, { log });
    product.push(p.perSecond);
    outOfOrder += p.outOfOrder;
    body = p.avgBody;
    floor.push(await floorPass(count, body));
    log(`run ${i + 1}/${runs}: product ${Math.round(p.perSecond)}/s, floor ${Math.round(floor[i])}/s`);
  }
  const stalled = await productPass(count, { stallThread: 't_bench0007', log });
  const p = median(product), f = median(floor);
  return {
    rows: [
      row('events per second', p, f, '/s', '≥ 2000/s', p >= 2000),
      row('events per second, one thread stalled', stalled.perSecond, p, '/s', '≥ 2000/s', stalled.perSecond >= 2000),
      row('events delivered out of thread order', outOfOrder + stalled.outOfOrder, null, '', '0', outOfOrder + stalled.outOfOrder === 0),
    ],
    extra: { count, runs, concurrency: CONCURRENCY, productPerSecond: product, floorPerSecond: floor, stalled, bodyBytes: body, loadAverage: machineLoad() },
  };
}
