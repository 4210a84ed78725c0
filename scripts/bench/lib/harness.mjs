// What every benchmark scenario needs: the private Dovecot, the built daemon as a child
// process (as operators run it), a webhook receiver on loopback, process figures from
// /proc, and percentiles.
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { dovecotEnv } from '../generate-mailbox.mjs';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const DOVECOT_DIR = path.join(root, '.run/bench-dovecot');
export const ATS_DOMAIN = 'ats.example.net';
export const TOKEN = `bench-${crypto.randomBytes(6).toString('hex')}`;
export const WEBHOOK_SECRET = `bench-secret-${crypto.randomBytes(6).toString('hex')}`;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value, or throws after `timeoutMs`. */
export async function until(fn, what, timeoutMs = 60_000, everyMs = 50) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await Promise.resolve().then(fn).catch((err) => {
      if (err.fatal) throw err;
      return null;
    });
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after ${Math.round(timeoutMs / 1000)} s`);
    await sleep(everyMs);
  }
}

const started = new Set();
/**
 * Starts (or reuses) one of the benchmarks' own Dovecot instances. `many` sizes it for
 * thousands of IDLE clients (scripts/dovecot.sh --many-clients: several connections per imap
 * process), which is only right when each mailbox has a single watcher.
 */
export function ensureDovecot({ many = false } = {}) {
  const dir = many ? `${DOVECOT_DIR}-many` : DOVECOT_DIR;
  // Output goes to our stderr, never to a pipe: the Dovecot master inherits it and would keep
  // a pipe open (spawnSync would wait for it forever).
  const args = [path.join(root, 'scripts/dovecot.sh'), 'start', '--dir', dir, '--lease', String(process.pid), ...(many ? ['--many-clients'] : [])];
  const res = spawnSync('bash', args, { stdio: ['ignore', 2, 2] });
  if (res.status !== 0) throw new Error(`starting Dovecot failed (exit ${res.status}); see the lines above`);
  if (!started.has(dir) && process.env.MAILSYNC_BENCH_KEEP_DOVECOT !== '1') {
    // 'exit' handlers must be synchronous: spawnSync is
    process.once('exit', () => spawnSync('bash', [path.join(root, 'scripts/dovecot.sh'), 'stop', '--dir', dir, '--lease', String(process.pid)], { stdio: 'ignore' }));
  }
  started.add(dir);
  return dovecotEnv(dir);
}

/** A scratch directory under .run/bench, removed unless `keep`. */
export function scratchDir(name) {
  const dir = path.join(root, '.run/bench', `${name}-${process.pid}-${crypto.randomBytes(3).toString('hex')}`);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().once('error', reject).listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Resident set size and CPU time (user + system) of a process, from /proc. */
export function procStats(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const hwmKb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  // fields after the command name (which may contain spaces) in /proc/PID/stat
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[11]) + Number(f[12]);
  return { rssBytes: rssKb * 1024, peakRssBytes: hwmKb * 1024, cpuMs: (ticks * 1000) / 100 };
}

/** Share of one core a process used over `ms` (0.05 = 5 %). */
export async function cpuShare(pid, ms) {
  const a = procStats(pid).cpuMs;
  const t = performance.now();
  await sleep(ms);
  return (procStats(pid).cpuMs - a) / (performance.now() - t);
}

/** The built daemon (`mailsync serve`) in its own process, on a config file of its own. */
export async function startDaemon({ dir, caFile, overrides = {}, logLevel = 'warn', env = {}, nodeArgs = [] }) {
  const port = await freePort();
  const config = deepMerge({
    api: { host: '127.0.0.1', port, tokens: [TOKEN] },
    store: { path: path.join(dir, 'store'), keyFile: path.join(dir, 'master.key') },
    ats: { messageIdDomains: [ATS_DOMAIN] },
    // the bench Dovecot offers STARTTLS with its own certificate
    sync: { allowPlaintext: true, tlsCaFile: caFile },
    smtp: { submission: { port: 0 }, intake: { port: 0 } },
    log: { level: logLevel },
  }, overrides);
  const configFile = path.join(dir, 'mailsync.yaml');
  fs.writeFileSync(configFile, YAML.stringify(config));
  const logFile = path.join(dir, 'daemon.log');
  const out = fs.openSync(logFile, 'a');
  // MAILSYNC_BENCH_CPU_PROF=DIR: the daemon writes a V8 CPU profile there when it stops
  const prof = process.env.MAILSYNC_BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(process.env.MAILSYNC_BENCH_CPU_PROF)}`] : [];
  const proc = spawn(process.execPath, [...prof, ...nodeArgs, path.join(root, 'dist/daemon/cli/main.js'), 'serve', '--config', configFile], {
    cwd: dir, stdio: ['ignore', out, out], env: { ...process.env, ...env },
  });
  fs.closeSync(out);
  let exited = null;
  proc.once('exit', (code, signal) => { exited = { code, signal }; });
  const url = `http://127.0.0.1:${port}`;
  await until(async () => {
    if (exited) throw Object.assign(new Error(`the daemon exited (${JSON.stringify(exited)})`), { fatal: true });
    return (await fetch(`${url}/readyz`)).ok;
  }, 'the daemon to be ready', 120_000).catch((err) => {
    proc.kill('SIGKILL');
    throw new Error(`${err.message}; log: ${fs.readFileSync(logFile, 'utf8').slice(-2000)}`);
  });
  const api = async (method, p, { body, actingUser } = {}) => {
    const headers = { authorization: `Bearer ${TOKEN}` };
    if (actingUser) headers['x-acting-user'] = actingUser;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${url}${p}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, body: text && (res.headers.get('content-type') ?? '').includes('json') ? JSON.parse(text) : text };
  };
  const stop = async () => {
    if (exited) return;
    const gone = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), 60_000);
    await gone;
    clearTimeout(t);
  };
  return { url, pid: proc.pid, proc, api, stop, logFile, config, stats: () => procStats(proc.pid) };
}

/** Consents a mailbox of the bench Dovecot for `userId` (registers the user first). */
export async function consent(daemon, dovecot, { userId, login, pass, address, syncSince = '2000-01-01T00:00:00Z' }) {
  const u = await daemon.api('PUT', `/v1/users/${userId}`, { body: { email: address, aliases: [], name: userId } });
  if (u.status !== 200) throw new Error(`PUT user ${userId}: ${u.status} ${JSON.stringify(u.body)}`);
  const m = await daemon.api('PUT', `/v1/users/${userId}/mailbox`, {
    actingUser: userId,
    body: { imap: { host: dovecot.host, port: dovecot.port, secure: false, auth: { user: login, pass } }, syncSince },
  });
  if (m.status !== 202) throw new Error(`PUT mailbox ${userId}: ${m.status} ${JSON.stringify(m.body)}`);
}

/** Waits until a mailbox is `live`; fails at once on a state that will not get there. */
export async function waitLive(daemon, userId, timeoutMs = 600_000) {
  await until(async () => {
    const { body } = await daemon.api('GET', `/v1/users/${userId}/mailbox`);
    if (['auth_failed', 'imap_disabled', 'unreachable', 'throttled'].includes(body.state)) {
      throw Object.assign(new Error(`mailbox ${userId} is ${body.state}: ${JSON.stringify(body.lastError)}`), { fatal: true });
    }
    return body.state === 'live';
  }, `mailbox ${userId} to be live`, timeoutMs, 100);
}

/**
 * A webhook receiver on loopback. `respond(body, req)` returns a status, or a promise of
 * one (to stall a path). `onEvent(body, at, bytes)` sees each accepted delivery as it arrives.
 */
export async function startReceiver({ respond = () => 200, onEvent = () => {} } = {}) {
  let count = 0;
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const at = performance.now();
      let body = null;
      const raw = Buffer.concat(chunks);
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        // counted as a delivery all the same; the floor sends the same bytes
      }
      const status = await respond(body, req);
      if (status >= 200 && status < 300) {
        count++;
        onEvent(body, at, raw.length);
      }
      res.writeHead(status, { 'content-length': '0' }).end();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}/hooks`,
    get count() { return count; },
    close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
  };
}

/** Percentiles by nearest rank: p(values, 99). */
export function percentile(values, p) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

export const median = (values) => percentile(values, 50);

export function summary(values) {
  return { n: values.length, p50: percentile(values, 50), p95: percentile(values, 95), p99: percentile(values, 99), max: values.length ? Math.max(...values) : null, mean: values.length ? values.reduce((a, b) => a + b, 0) / values.length : null };
}

export const round = (v, digits = 1) => (v === null || v === undefined ? null : Math.round(v * 10 ** digits) / 10 ** digits);

/** A table row; `ratio` is product / floor when both are numbers. */
export function row(metric, product, floor, unit, target, pass) {
  const ratio = typeof product === 'number' && typeof floor === 'number' && floor !== 0 ? round(product / floor, 2) : null;
  return { metric, product: round(product, 2), floor: round(floor, 2), unit, ratio, target, pass };
}

export function machineLoad() {
  return os.loadavg().map((v) => round(v, 2));
}

export function deepMerge(a, b) {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const av = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && av && typeof av === 'object' && !Array.isArray(av) ? deepMerge(av, v) : v;
  }
  return out;
}
