// Scenario 3: 2,000 consenting users live at once in one daemon process. Memory (RSS), CPU
// while idle, and push latency while a reply a second arrives for random users. The floor is
// a process holding 2,000 bare imapflow IDLE clients on the same mailboxes, measured the
// same way (before the daemon, never at the same time).
import { atsReply } from './generate-mailbox.mjs';
import { cachedMailbox, ensureUsers } from './lib/cached-mailbox.mjs';
import { WEBHOOK_SECRET, consent, cpuShare, ensureDovecot, machineLoad, procStats, row, scratchDir, sleep, startDaemon, startReceiver, summary, until } from './lib/harness.mjs';
import { appender, measurePush, startFloor, webhookWaiter } from './lib/push.mjs';
import { PUSH_SLACK_MS } from './push-latency.mjs';

export const name = 'capacity';
export const describe = '2,000 users live on one process: RSS, idle CPU and push p99 at a reply a second, against 2,000 bare IDLE clients';

const RSS_TARGET_MB = 300;
const mb = (b) => b / 1048576;

/** What a process costs at rest, then push latency at one reply a second for random users. */
async function measureSide({ pid, env, users, mailboxes, floor, webhooks, replies, quietMs, gapMs, log, label, seed }) {
  await sleep(quietMs); // let start-up work (initial syncs, GC) settle
  const idleCpu = await cpuShare(pid, quietMs);
  const rssIdle = procStats(pid).rssBytes;
  let k = 0;
  const res = await measurePush({
    count: replies, floor, webhooks, log, label: `${label}: `, gapMs,
    next: async (i) => {
      const u = (i * 7919 + seed) % users.length;
      const thread = mailboxes[u].atsThreads[k++ % mailboxes[u].atsThreads.length];
      const { raw, messageId } = atsReply(thread, { owner: users[u].owner, seed, n: i, date: new Date() });
      const app = await appender(env, users[u].login);
      return { login: users[u].login, raw, messageId, append: async (r) => { try { return await app.append(r); } finally { await app.close(); } } };
    },
  });
  return { idleCpu, rssIdle, rssAfter: procStats(pid).rssBytes, push: res };
}

export default async function run({ quick, log }) {
  const n = quick ? 50 : 2_000;
  const replies = quick ? 8 : 120;
  const quietMs = quick ? 2_000 : 15_000;
  // a reply a second; the quick run keeps under a minute with replies closer together
  const gapMs = quick ? [400, 600] : [900, 1100];
  const env = ensureDovecot({ many: true });
  const users = Array.from({ length: n }, (_, i) => {
    const user = `cap-${String(i).padStart(4, '0')}`;
    return { login: { user, pass: `pw-${user}` }, owner: { address: `${user}@example.com`, name: `Recruiter ${i}` }, userId: `u-${user}` };
  });
  await ensureUsers(env.dir, users.map((u) => u.login));
  log(`preparing ${n} mailboxes of 20 messages (kept between runs)`);
  const mailboxes = [];
  for (const [i, u] of users.entries()) mailboxes.push(await cachedMailbox(env.dir, { ...u.login, owner: u.owner, count: 20, seed: 1000 + i, atsShare: 0.15 }));

  // ---- floor: bare IDLE clients
  let t0 = performance.now();
  const floor = await startFloor(env, users.map((u) => u.login));
  log(`floor: ${n} bare IDLE clients connected in ${Math.round(performance.now() - t0)} ms`);
  let floorSide;
  try {
    floorSide = await measureSide({ pid: floor.pid, env, users, mailboxes, floor, webhooks: null, replies, quietMs, gapMs, log, label: 'floor', seed: 1 });
  } finally {
    await floor.stop();
  }

  // ---- product: the daemon with every user consenting
  const webhooks = webhookWaiter();
  // `live` from the mailbox.state_changed webhooks: polling 2,000 statuses every two seconds
  // (each counts the mailbox's stored messages) loaded the daemon it was timing
  const live = new Set();
  const receiver = await startReceiver({
    onEvent: (body, at) => {
      if (body?.type === 'mailbox.state_changed' && body.data.state === 'live') live.add(body.data.userId);
      webhooks.onEvent(body, at);
    },
  });
  const dir = scratchDir(name);
  const daemon = await startDaemon({ dir, caFile: env.caFile, overrides: { webhooks: { url: receiver.url, secret: WEBHOOK_SECRET } } });
  let productSide, liveMs, peakDuringStart;
  try {
    t0 = performance.now();
    const queue = [...users];
    await Promise.all(Array.from({ length: 16 }, async () => {
      for (let u = queue.shift(); u; u = queue.shift()) await consent(daemon, env, { userId: u.userId, login: u.login.user, pass: u.login.pass, address: u.owner.address });
    }));
    log(`${n} consents given in ${Math.round(performance.now() - t0)} ms; waiting for all to be live`);
    let lastLog = 0;
    await until(() => {
      if (live.size < n && Date.now() - lastLog >= 5_000) {
        lastLog = Date.now();
        log(`${live.size}/${n} live, RSS ${Math.round(mb(daemon.stats().rssBytes))} MB`);
      }
      return live.size >= n;
    }, `all ${n} mailboxes live`, 1_800_000, 20);
    liveMs = performance.now() - t0;
    peakDuringStart = daemon.stats().peakRssBytes;
    log(`all live after ${Math.round(liveMs / 1000)} s`);
    productSide = await measureSide({ pid: daemon.pid, env, users, mailboxes, floor: null, webhooks, replies, quietMs, gapMs, log, label: 'product', seed: 2 });
  } finally {
    await daemon.stop();
    await receiver.close();
  }

  const p = summary(productSide.push.product), f = summary(floorSide.push.floor);
  const rss = mb(Math.max(productSide.rssIdle, productSide.rssAfter));
  return {
    rows: [
      row(`RSS with ${n} users live`, rss, mb(Math.max(floorSide.rssIdle, floorSide.rssAfter)), 'MB', `≤ ${RSS_TARGET_MB} MB`, rss <= RSS_TARGET_MB),
      row('CPU while idle (share of one core)', productSide.idleCpu * 100, floorSide.idleCpu * 100, '%', null, null),
      row('push p50 under load', p.p50, f.p50, 'ms', null, null),
      row('push p99 under load', p.p99, f.p99, 'ms', `≤ floor p99 + ${PUSH_SLACK_MS} ms`, p.p99 !== null && f.p99 !== null && productSide.push.lost === 0 && p.p99 <= f.p99 + PUSH_SLACK_MS),
      row(`consent → all ${n} live`, liveMs / 1000, null, 's', null, null),
      row('peak RSS while connecting', mb(peakDuringStart), null, 'MB', null, null),
    ],
    extra: { users: n, replies, product: { ...productSide, push: p, lost: productSide.push.lost }, floor: { ...floorSide, push: f, lost: floorSide.push.lost }, liveMs, loadAverage: machineLoad() },
  };
}
