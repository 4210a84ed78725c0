// Scenario 5: a candidate's thread list (GET /v1/candidates/{id}/threads, 50 per page) on a
// store holding 1,000,000 messages, p99 over sequential requests for random candidates, and
// for candidates with 1,000 threads. Floor: a bare HTTP server doing the one range scan and
// multi-get such a page needs, on the same store.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TOKEN, machineLoad, root, row, startDaemon, summary } from './lib/harness.mjs';
import { ACTOR, writeBulkStore } from './lib/bulk-store.mjs';
import { createRandom } from './lib/message-flavors.mjs';

export const name = 'api';
export const describe = 'candidate thread list p99 with 1,000,000 stored messages, against a bare range read of the same store';

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function get(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    http.get(url, { agent, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ ms: performance.now() - t0, status: res.statusCode, body: Buffer.concat(chunks) }));
    }).on('error', reject);
  });
}

async function measure(urlFor, ids, headers) {
  const times = [];
  for (const id of ids) {
    const r = await get(urlFor(id), headers);
    if (r.status !== 200) throw new Error(`GET ${urlFor(id)} answered ${r.status}: ${r.body.toString().slice(0, 200)}`);
    times.push(r.ms);
  }
  return times;
}

/** The bulk store is kept between runs (it is deterministic): .run/bench-cache/api-N. */
async function cachedStore(messages, log) {
  const dir = path.join(root, '.run/bench-cache', `api-${messages}`);
  const marker = path.join(dir, 'ready.json');
  if (fs.existsSync(marker)) return { dir, ...JSON.parse(fs.readFileSync(marker, 'utf8')) };
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const t0 = performance.now();
  log(`writing ${messages} messages into a store (once; kept in ${path.relative(root, dir)})`);
  const info = await writeBulkStore(dir, { messages, heavy: messages >= 100_000 ? 10 : 2, log });
  const meta = { heavy: info.heavy, normal: info.normal.length, threads: info.threads, messages: info.messages, writeSeconds: Math.round((performance.now() - t0) / 1000) };
  fs.writeFileSync(marker, JSON.stringify(meta));
  return { dir, ...meta };
}

export default async function run({ quick, log }) {
  const messages = quick ? 50_000 : 1_000_000;
  const requests = quick ? 300 : 2_000;
  const s = await cachedStore(messages, log);
  const rnd = createRandom(5);
  const normalIds = Array.from({ length: requests }, () => `c-${rnd.int(s.normal)}`);
  const heavyIds = Array.from({ length: Math.ceil(requests / 4) }, (_, i) => s.heavy[i % s.heavy.length]);
  const headers = { authorization: `Bearer ${TOKEN}`, 'x-acting-user': ACTOR };

  const daemon = await startDaemon({ dir: s.dir, overrides: { store: { path: path.join(s.dir, 'store') } } });
  let product, productHeavy;
  try {
    const url = (id) => `${daemon.url}/v1/candidates/${id}/threads?limit=50`;
    const first = await get(url(heavyIds[0]), headers);
    const page = JSON.parse(first.body.toString());
    if (page.threads.length !== 50 || page.threads.some((t) => t.secret)) throw new Error('a heavy candidate\'s first page is not 50 visible threads');
    await measure(url, normalIds.slice(0, 200), headers); // warm-up
    product = await measure(url, normalIds, headers);
    productHeavy = await measure(url, heavyIds, headers);
  } finally {
    await daemon.stop();
  }

  const floorProc = spawn(process.execPath, [path.join(path.dirname(fileURLToPath(import.meta.url)), 'lib/floor-store-http.mjs'), path.join(s.dir, 'store')], { stdio: ['ignore', 'pipe', 'inherit'] });
  let floor, floorHeavy;
  try {
    const port = await new Promise((resolve, reject) => {
      floorProc.stdout.once('data', (d) => resolve(JSON.parse(String(d)).port));
      floorProc.once('exit', (code) => reject(new Error(`the floor server exited with ${code}`)));
    });
    const url = (id) => `http://127.0.0.1:${port}/c/${id}`;
    await measure(url, normalIds.slice(0, 200));
    floor = await measure(url, normalIds);
    floorHeavy = await measure(url, heavyIds);
  } finally {
    floorProc.kill('SIGTERM');
    await new Promise((r) => floorProc.once('exit', r));
  }
  agent.destroy();
  const p = summary(product), f = summary(floor), ph = summary(productHeavy), fh = summary(floorHeavy);
  return {
    rows: [
      row(`thread list p50 (${messages} messages)`, p.p50, f.p50, 'ms', null, null),
      row('thread list p99', p.p99, f.p99, 'ms', '≤ 10 ms', p.p99 <= 10),
      row('thread list p99, 1,000-thread candidates', ph.p99, fh.p99, 'ms', '≤ 10 ms', ph.p99 <= 10),
    ],
    extra: { store: s, requests, product: p, floor: f, productHeavy: ph, floorHeavy: fh, loadAverage: machineLoad() },
  };
}
