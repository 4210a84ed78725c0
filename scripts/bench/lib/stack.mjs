// The daemon's store layer (from dist/), wired as daemon.ts wires it, for scenarios that
// fill a store directly instead of going through IMAP.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { root } from './harness.mjs';

const dist = (p) => import(path.join(root, 'dist/daemon', p));

/** Opens (or creates) a store at `dir`/store with the key in `dir`/master.key, as the daemon would. */
export async function openStack(dir, { encryptContent = true, push = false, domains = ['ats.example.net'] } = {}) {
  const [{ Store }, { Outbox }, { Accounts }, { Threads }, { Ingestor }, { normaliseAddress }, { isAtsDomainId }] = await Promise.all([
    dist('store/store.js'), dist('store/outbox.js'), dist('store/accounts.js'), dist('store/threads.js'), dist('sync/ingestor.js'),
    dist('threads/addresses.js'), dist('threads/matching.js'),
  ]);
  const keyFile = path.join(dir, 'master.key');
  if (!fs.existsSync(keyFile)) fs.writeFileSync(keyFile, crypto.randomBytes(32).toString('hex'), { mode: 0o600 });
  const masterKey = Buffer.from(fs.readFileSync(keyFile, 'utf8').trim(), 'hex');
  const store = await Store.open({ path: path.join(dir, 'store'), masterKey, encryptContent });
  const outbox = new Outbox(store, { push });
  await outbox.init();
  const normalise = (a) => normaliseAddress(a);
  const accounts = new Accounts(store, outbox, normalise);
  const threads = new Threads(store, outbox, accounts, { isAtsKey: (k) => isAtsDomainId(k, domains), normalise, maxRawBytes: 26_214_400 });
  const silent = { child: () => silent, info() {}, warn() {}, debug() {}, error() {}, isLevelEnabled: () => false };
  const ingestor = new Ingestor(threads, silent, { parseTimeoutMs: 30_000 });
  return { store, outbox, accounts, threads, ingestor, keyFile };
}

/** Bytes of all files under `dir`. */
export function diskBytes(dir) {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    n += e.isDirectory() ? diskBytes(p) : fs.statSync(p).size;
  }
  return n;
}
