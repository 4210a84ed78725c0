// Scenario 2: consent → `live` on a big mailbox (INBOX and Sent, 2 % of messages in ATS
// threads), against a bare imapflow client fetching the same header fields of the same
// folders. Runs alternate floor / product on a warm Dovecot; medians are reported.
import fs from 'node:fs';
import path from 'node:path';
import { ImapFlow } from 'imapflow';
import { cachedMailbox } from './lib/cached-mailbox.mjs';
import { WEBHOOK_SECRET, consent, ensureDovecot, machineLoad, median, root, row, scratchDir, startDaemon, startReceiver, until } from './lib/harness.mjs';

export const name = 'initial-sync';
export const describe = 'consent → live on a 50,000-message mailbox (2 % ATS) against a bare imapflow header fetch of the same folders';

const SYNC_SINCE = '2000-01-01T00:00:00Z';

/**
 * The floor: one connection, EXAMINE, UID SEARCH SINCE and a streamed FETCH of the header
 * fields the daemon asks for. Over STARTTLS, as the daemon connects whenever a server offers
 * it (Dovecot then relays the session through its login process, which costs it time).
 */
async function floorRun(env, login, headerNames) {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const client = new ImapFlow({ host: env.host, port: env.port, secure: false, doSTARTTLS: true, tls: { ca: fs.readFileSync(env.caFile) }, logger: false, auth: login, disableAutoIdle: true });
  client.on('error', () => {});
  await client.connect();
  let n = 0;
  for (const folder of ['INBOX', 'Sent']) {
    await client.mailboxOpen(folder, { readOnly: true });
    const uids = await client.search({ since: new Date(SYNC_SINCE) }, { uid: true });
    if (!uids?.length) continue;
    for await (const m of client.fetch('1:*', { uid: true, size: true, internalDate: true, headers: headerNames }, { uid: true })) if (m.headers) n++;
  }
  await client.logout();
  const cpu = process.cpuUsage(cpu0);
  return { ms: performance.now() - t0, messages: n, cpuMs: (cpu.user + cpu.system) / 1000 };
}

async function productRun(env, login, address, log, i) {
  const dir = scratchDir(`${name}-${i}`);
  // `live` is taken from the mailbox.state_changed webhook, not by polling the status: the
  // status counts the mailbox's stored messages on each call, and polling it every 100 ms
  // cost the daemon more CPU than parts of the sync itself (seen in a CPU profile)
  let liveAt = 0;
  const receiver = await startReceiver({
    onEvent: (body, at) => {
      if (body?.type === 'mailbox.state_changed' && body.data.userId === 'u-sync' && body.data.state === 'live') liveAt ||= at;
    },
  });
  const daemon = await startDaemon({ dir, caFile: env.caFile, overrides: { webhooks: { url: receiver.url, secret: WEBHOOK_SECRET } } });
  try {
    const t0 = performance.now();
    const cpu0 = daemon.stats().cpuMs;
    await consent(daemon, env, { userId: 'u-sync', login: login.user, pass: login.pass, address, syncSince: SYNC_SINCE });
    await until(() => liveAt, 'the mailbox to be live', 1_800_000, 20);
    const ms = liveAt - t0;
    const cpuMs = daemon.stats().cpuMs - cpu0;
    const status = (await daemon.api('GET', '/v1/users/u-sync/mailbox')).body;
    const peak = daemon.stats().peakRssBytes;
    return { ms, cpuMs, counts: status.counts, peakRssMb: Math.round(peak / 1048576) };
  } catch (err) {
    log(`product run failed; kept ${dir}`);
    throw err;
  } finally {
    await daemon.stop();
    await receiver.close();
    if (fs.existsSync(dir)) fs.rmSync(dir, { recursive: true, force: true });
  }
}

export default async function run({ quick, log }) {
  const count = quick ? 3_000 : 50_000;
  const runs = quick ? 1 : 3;
  const env = ensureDovecot();
  const login = { user: `sync-${count}`, pass: `pw-sync-${count}` };
  const address = `${login.user}@example.com`;
  log(`preparing a ${count}-message mailbox (kept between runs)`);
  const mailbox = await cachedMailbox(env.dir, { ...login, owner: { address, name: 'Sam Sourcer' }, count, seed: 21, atsShare: 0.02 });
  const { ID_HEADER_NAMES } = await import(path.join(root, 'dist/daemon/threads/message-ids.js'));
  // warm-up: Dovecot builds its index and header cache on the first pass; neither side pays it
  const warm = await floorRun(env, login, ID_HEADER_NAMES);
  log(`warm-up fetch of ${warm.messages} messages took ${Math.round(warm.ms)} ms`);
  const floors = [], floorCpu = [], products = [];
  for (let i = 0; i < runs; i++) {
    const f = await floorRun(env, login, ID_HEADER_NAMES);
    floors.push(f.ms);
    floorCpu.push(f.cpuMs);
    const p = await productRun(env, login, address, log, i);
    products.push(p);
    log(`run ${i + 1}/${runs}: floor ${Math.round(f.ms)} ms (CPU ${Math.round(f.cpuMs)} ms), product ${Math.round(p.ms)} ms (CPU ${Math.round(p.cpuMs)} ms; stored ${p.counts.messages} messages in ${p.counts.threads} threads, peak RSS ${p.peakRssMb} MB)`);
  }
  const product = median(products.map((p) => p.ms)) / 1000, floor = median(floors) / 1000;
  const stored = products[0].counts.messages;
  return {
    rows: [
      row(`initial sync, ${count} messages`, product, floor, 's', '≤ 1.25 × floor', product <= 1.25 * floor),
      row('messages examined per second', count / product, count / floor, '/s', null, null),
      // CPU time moves much less than wall time with the machine's load: the daemon's process
      // against the floor's client (Dovecot's own share is in neither)
      row('CPU time of the syncing process', median(products.map((p) => p.cpuMs)) / 1000, median(floorCpu) / 1000, 's', null, null),
      row('ATS messages stored', stored, mailbox.counts.ats, '', `all ${mailbox.counts.ats}`, stored === mailbox.counts.ats),
      row('daemon peak RSS during sync', Math.max(...products.map((p) => p.peakRssMb)), null, 'MB', null, null),
    ],
    extra: { count, runs, floorMs: floors, floorCpuMs: floorCpu, productMs: products.map((p) => p.ms), products, mailbox: mailbox.counts, loadAverage: machineLoad() },
  };
}
