// Relay throughput: the ATS sends N messages through the daemon's submission listener and the
// relay delivers them to a local SMTP sink standing for the provider (a process of its own, as a
// provider is not inside the ATS); the floor is the same client sending the same messages
// straight to the sink, in the same run. Both use the same
// number of SMTP connections on the client side. Throughput is messages per second from the
// first send to the last message accepted by the sink (for the relay: sent on, not only queued).
// Two senders: a consented user relaying through their own smtp settings (the usual case; the
// sync stores the sent message from their Sent folder), and a limited-sync user without IMAP
// consent relaying through the smarthost (the relay stores each sent message itself).
import { fork, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import nodemailer from 'nodemailer';
import YAML from 'yaml';

export const name = 'relay';
export const describe = 'SMTP relay throughput (ATS → submission → queue → provider) against the same client sending straight to the provider';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TOKEN = `bench-${crypto.randomBytes(6).toString('hex')}`;
const ATS = { user: 'ats', pass: `bench-relay-${crypto.randomBytes(6).toString('hex')}` };
/** SMTP connections the ATS client keeps open, on both paths. */
const CLIENT_CONNECTIONS = 3;
const TARGET = 0.7;
const SENDERS = { consented: 'robin@example.com', limited: 'lee@example.com' };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(fn, what, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await Promise.resolve().then(fn).catch(() => null);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after ${Math.round(timeoutMs / 1000)} s`);
    await sleep(20);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().once('error', reject).listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The provider, in its own process: accepts everything, counts by Message-ID. */
async function startSink() {
  const child = fork(path.join(root, 'scripts/bench/lib/smtp-sink.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ask = (question, key) => new Promise((resolve) => {
    const on = (m) => {
      if (key in m) {
        child.off('message', on);
        resolve(m[key]);
      }
    };
    child.on('message', on);
    child.send(question);
  });
  const port = await new Promise((resolve, reject) => {
    child.once('message', (m) => resolve(m.port));
    child.once('exit', (code) => reject(new Error(`the SMTP sink exited (${code})`)));
  });
  let count = 0;
  return {
    port,
    /** Refreshed by `refresh` (one IPC round trip), so `until` can poll it. */
    get count() { return count; },
    refresh: async () => { count = await ask('count', 'count'); return count; },
    duplicates: () => ask('duplicates', 'duplicates'),
    reset: async () => { await ask('reset', 'reset'); count = 0; },
    close: () => new Promise((r) => { child.once('exit', r); child.send('stop'); }),
  };
}

/** The built daemon as operators run it, relaying through a smarthost that is the sink. */
async function startDaemon(dir, sinkPort) {
  const [apiPort, submissionPort, closedImapPort] = [await freePort(), await freePort(), await freePort()];
  const config = {
    api: { host: '127.0.0.1', port: apiPort, tokens: [TOKEN] },
    store: { path: path.join(dir, 'store'), keyFile: path.join(dir, 'master.key') },
    ats: { messageIdDomains: ['ats.example.net'] },
    smtp: {
      submission: { port: submissionPort, users: [ATS] }, intake: { port: 0 },
      relay: { allowPlaintext: true, smarthost: { host: '127.0.0.1', port: sinkPort } },
    },
    log: { level: 'warn' },
  };
  const file = path.join(dir, 'mailsync.yaml');
  fs.writeFileSync(file, YAML.stringify(config));
  const out = fs.openSync(path.join(dir, 'daemon.log'), 'a');
  const proc = spawn(process.execPath, [path.join(root, 'dist/daemon/cli/main.js'), 'serve', '--config', file], { cwd: dir, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  const api = `http://127.0.0.1:${apiPort}`;
  await until(async () => (await fetch(`${api}/readyz`)).ok, 'the daemon to be ready', 60_000);
  const call = async (method, url, body, actingUser) => {
    const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', ...(actingUser ? { 'x-acting-user': actingUser } : {}) };
    const res = await fetch(`${api}${url}`, { method, headers, body: JSON.stringify(body) });
    if (res.status >= 300) throw new Error(`${method} ${url}: ${res.status} ${await res.text()}`);
  };
  await call('PUT', '/v1/users/u-limited', { email: SENDERS.limited });
  await call('PUT', '/v1/users/u-consented', { email: SENDERS.consented });
  // IMAP points at a closed port: this benchmark is about sending; the sync is measured elsewhere
  await call('PUT', '/v1/users/u-consented/mailbox', {
    imap: { host: '127.0.0.1', port: closedImapPort, secure: false, auth: { user: 'robin', pass: 'imap-unused' } },
    smtp: { host: '127.0.0.1', port: sinkPort, secure: false, auth: { user: 'robin', pass: 'smtp-bench' } },
  }, 'u-consented');
  return {
    submissionPort,
    stop: async () => {
      const gone = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await gone;
    },
  };
}

/** An ATS email of a usual size: text and HTML alternatives, about 3 KB. */
function mail(i, from) {
  const para = 'Thank you for your application for the Backend Engineer role. We would like to invite you to a first conversation with the team; please pick a slot that suits you from the list below. ';
  return {
    from, to: `Candidate ${i} <candidate${i}@example.org>`,
    subject: `Your application (${i})`, text: para.repeat(6), html: `<p>${para.repeat(6)}</p>`,
    headers: { 'X-Mailsync-Candidate': `c-${i % 50}` },
  };
}

/** Sends `n` messages through `transport` with all its connections busy; resolves when `done()` says so. */
async function pass(transport, from, n, offset, done) {
  const t0 = performance.now();
  await Promise.all(Array.from({ length: n }, (_, i) => transport.sendMail(mail(offset + i, from))));
  const accepted = performance.now() - t0;
  await until(done, `every message at the sink (${n})`, 120_000);
  return { seconds: (performance.now() - t0) / 1000, acceptedSeconds: accepted / 1000 };
}

export default async function run({ quick, log }) {
  const n = quick ? 300 : 2_000;
  const rounds = quick ? 1 : 2;
  const dir = path.join(root, '.run/bench', `relay-${process.pid}-${crypto.randomBytes(3).toString('hex')}`);
  fs.mkdirSync(dir, { recursive: true });
  const sink = await startSink();
  const daemon = await startDaemon(dir, sink.port);
  const client = (port, auth) => nodemailer.createTransport({ pool: true, maxConnections: CLIENT_CONNECTIONS, maxMessages: Infinity, host: '127.0.0.1', port, secure: false, ignoreTLS: true, auth, logger: false });
  const direct = client(sink.port, undefined);
  const relay = client(daemon.submissionPort, ATS);
  let ok = false;
  try {
    // warm up every path (connections, JIT) before measuring
    const paths = [['direct', direct, SENDERS.consented], ['relay', relay, SENDERS.consented], ['relay, limited sync', relay, SENDERS.limited]];
    for (const [, transport, from] of paths) {
      await sink.reset();
      await pass(transport, from, 50, 0, async () => (await sink.refresh()) >= 50);
    }
    const runs = Object.fromEntries(paths.map(([label]) => [label, []]));
    let offset = 100;
    for (let r = 0; r < rounds; r++) {
      for (const [label, transport, from] of paths) {
        await sink.reset();
        const res = await pass(transport, from, n, offset, async () => (await sink.refresh()) >= n);
        offset += n;
        const twice = await sink.duplicates();
        if (twice) throw new Error(`${label}: ${twice} message(s) arrived twice`);
        runs[label].push(res);
        log(`round ${r + 1}, ${label}: ${n} messages in ${res.seconds.toFixed(2)} s (${(n / res.seconds).toFixed(0)}/s; all accepted after ${res.acceptedSeconds.toFixed(2)} s)`);
      }
    }
    const rate = (list) => n / (list.reduce((a, x) => a + x.seconds, 0) / list.length);
    const floor = rate(runs.direct);
    const row = (metric, product) => ({ metric, product, floor, unit: 'msg/s', ratio: product / floor, target: `≥ ${TARGET} × direct`, pass: product / floor >= TARGET });
    ok = true;
    return {
      rows: [row('relay throughput', rate(runs.relay)), row('relay throughput, limited sync', rate(runs['relay, limited sync']))],
      extra: {
        messages: n, rounds, clientConnections: CLIENT_CONNECTIONS, runs,
        note: 'accepted durably (fsync, shared by messages arriving together) and sent on with the default relay settings; limited sync also stores each sent message in its thread',
      },
    };
  } finally {
    direct.close();
    relay.close();
    await daemon.stop();
    await sink.close();
    if (ok) fs.rmSync(dir, { recursive: true, force: true });
    else log(`the daemon's log is in ${path.relative(root, dir)}/daemon.log`);
  }
}
