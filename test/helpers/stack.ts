import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import pino from 'pino';
import type { Test } from 'tap';
import { Store } from '../../daemon/store/store.js';
import { Outbox } from '../../daemon/store/outbox.js';
import { Accounts } from '../../daemon/store/accounts.js';
import { Threads } from '../../daemon/store/threads.js';
import { normaliseAddress } from '../../daemon/threads/addresses.js';
import { isAtsDomainId } from '../../daemon/threads/matching.js';
import { Ingestor, type OnStored } from '../../daemon/sync/ingestor.js';

/** A fresh temp directory, removed when the test ends. */
export function tempDir(t: Test, prefix = 'mailsync-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The store layer on a fresh LevelDB, as the daemon wires it. */
export async function openStack(t: Test, opts: { domains?: string[]; encryptContent?: boolean; push?: boolean; onStored?: OnStored } = {}) {
  const dir = tempDir(t);
  const store = await Store.open({ path: dir, masterKey: crypto.randomBytes(32), encryptContent: opts.encryptContent ?? true });
  t.teardown(() => store.close());
  const outbox = new Outbox(store, { push: opts.push ?? false });
  await outbox.init();
  const normalise = (a: string) => normaliseAddress(a);
  const accounts = new Accounts(store, outbox, normalise);
  const domains = opts.domains ?? ['ats.example.net'];
  const threads = new Threads(store, outbox, accounts, { isAtsKey: (k) => isAtsDomainId(k, domains), normalise, maxRawBytes: 1_000_000 });
  const ingestor = new Ingestor(threads, pino({ level: 'silent' }), { parseTimeoutMs: 5_000, onStored: (keys, ctx, reconsider) => opts.onStored?.(keys, ctx, reconsider) });
  return { dir, store, outbox, accounts, threads, ingestor };
}
