// Scenario 6: bytes on disk per stored message. Generated ATS threads go through the real
// ingest path (header fields → match → parse → one batch per message), the store is
// compacted, and its size is divided by the messages stored. The floor is the messages' own
// size (what a maildir holds for them).
import crypto from 'node:crypto';
import fs from 'node:fs';
import { generateMailbox } from './generate-mailbox.mjs';
import { machineLoad, row, scratchDir } from './lib/harness.mjs';
import { diskBytes, openStack } from './lib/stack.mjs';

export const name = 'storage';
export const describe = 'bytes on disk per stored message (content encrypted at rest), against the raw message size';

function headerBlock(raw) {
  const end = raw.indexOf('\r\n\r\n');
  return end < 0 ? raw : raw.subarray(0, end + 4);
}

async function fill(dir, messages, encryptContent) {
  const { store, ingestor } = await openStack(dir, { encryptContent });
  let stored = 0, uid = 0;
  for (const m of messages) {
    uid++;
    const rec = ingestor.headerRecord(uid, headerBlock(m.raw), m.raw.length, m.date, `bench\n${m.folder}\n1\n${uid}`);
    const loc = { userId: 'u-store', folder: m.folder, uidValidity: '1', uid };
    const res = await ingestor.ingest(rec, m.raw, true, { userId: 'u-store', folder: m.folder, location: loc });
    if (res.status === 'stored') stored++;
  }
  await store.compact();
  await store.close();
  return stored;
}

export default async function run({ quick, log }) {
  const count = quick ? 500 : 5_000;
  // every message in an ATS thread, so every one is stored
  const messages = [...generateMailbox({ seed: 61, count, atsShare: 1 }).messages];
  const rawBytes = messages.reduce((n, m) => n + m.raw.length, 0);
  const rows = [];
  const extra = { count, rawBytes, loadAverage: machineLoad() };
  for (const encryptContent of [true, false]) {
    const dir = scratchDir(`${name}-${crypto.randomBytes(2).toString('hex')}`);
    try {
      const t0 = performance.now();
      const stored = await fill(dir, messages, encryptContent);
      const bytes = diskBytes(`${dir}/store`);
      log(`${stored} messages stored in ${Math.round(performance.now() - t0)} ms; store ${Math.round(bytes / 1048576)} MB (encryptContent ${encryptContent})`);
      if (stored !== count) throw new Error(`only ${stored} of ${count} messages were stored`);
      rows.push(row(`bytes per message${encryptContent ? '' : ' (encryptContent off)'}`, bytes / stored, rawBytes / count, 'B', null, null));
      extra[encryptContent ? 'encrypted' : 'plain'] = { storeBytes: bytes, stored };
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  return { rows, extra };
}
