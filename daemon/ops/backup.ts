import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import zlib from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { Level } from 'level';
import type { Store } from '../store/store.js';
import { MailsyncError } from '../errors.js';

/**
 * Backups of the store as a stream of lines: a header, one `[key, base64 value]` line per
 * entry (values exactly as stored, secrets still sealed), and an end line with the count and a
 * SHA-256 of the entry lines, so a cut-off stream is never taken for a whole backup.
 *
 * The entries come from one LevelDB iterator, which reads from a snapshot taken when it is
 * created: a backup made while the daemon runs is one consistent point in time.
 */

export const BACKUP_FILE = 'mailsync-backup.ndjson.gz';
export const MANIFEST_FILE = 'manifest.json';
const FORMAT = 'mailsync-backup';
const FORMAT_VERSION = 1;
/** Input to the keyed hash that tells whether a backup was made under the configured key. */
export const KEY_CHECK_INPUT = 'mailsync:key-check';

export interface BackupHeader {
  format: typeof FORMAT;
  version: number;
  createdAt: string;
  /** Keyed hash of a constant under the store's master key: equal only under the same key. */
  keyCheck: string;
}

export interface BackupManifest extends BackupHeader {
  entries: number;
  sha256: string;
  file: string;
}

export async function* backupLines(store: Store): AsyncGenerator<string> {
  // the database stays open (an erasure's reopening waits) while the iterator reads
  const release = await store.hold();
  // created right after: this is the moment the backup shows
  const iterator = store.db.iterator({ keyEncoding: 'utf8', valueEncoding: 'buffer' });
  const header: BackupHeader = { format: FORMAT, version: FORMAT_VERSION, createdAt: new Date().toISOString(), keyCheck: store.idHasher.hash(KEY_CHECK_INPUT) };
  const hash = crypto.createHash('sha256');
  let entries = 0;
  try {
    yield `${JSON.stringify(header)}\n`;
    for await (const [key, value] of iterator) {
      const line = `${JSON.stringify([key, value.toString('base64')])}\n`;
      hash.update(line);
      entries++;
      yield line;
    }
  } finally {
    await iterator.close();
    release();
  }
  yield `${JSON.stringify({ end: true, entries, sha256: hash.digest('hex') })}\n`;
}

function backupError(message: string): MailsyncError {
  return new MailsyncError('MAILSYNC_ERR_BACKUP', message);
}

/** Checks backup lines one by one: the header, every entry, and the end line against both. */
class BackupChecker {
  header: BackupHeader | null = null;
  entries = 0;
  #ended = false;
  readonly #hash = crypto.createHash('sha256');

  #lines = 0;

  /** The entry on this line, or null for the header and end lines. */
  line(raw: string): [string, Buffer] | null {
    this.#lines++;
    try {
      return this.#line(raw);
    } catch (err) {
      if (err instanceof SyntaxError) throw backupError(`the backup is damaged: line ${this.#lines} is not valid JSON`);
      throw err;
    }
  }

  #line(raw: string): [string, Buffer] | null {
    if (this.#ended) throw backupError('the backup has data after its end line');
    if (!this.header) {
      const h = JSON.parse(raw) as BackupHeader;
      if (h.format !== FORMAT) throw backupError('this is not a mailsync backup');
      if (h.version > FORMAT_VERSION) throw backupError(`the backup has format version ${h.version}; this mailsync reads up to ${FORMAT_VERSION}: upgrade mailsync`);
      this.header = h;
      return null;
    }
    if (raw.startsWith('{')) {
      const end = JSON.parse(raw) as { end?: boolean; entries?: number; sha256?: string };
      if (!end.end || end.entries !== this.entries || end.sha256 !== this.#hash.digest('hex')) {
        throw backupError(`the backup is damaged: its end line does not match its ${this.entries} entries`);
      }
      this.#ended = true;
      return null;
    }
    const entry = JSON.parse(raw) as [string, string];
    if (!Array.isArray(entry) || typeof entry[0] !== 'string' || typeof entry[1] !== 'string') throw backupError(`entry ${this.entries + 1} of the backup is damaged`);
    this.#hash.update(`${raw}\n`);
    this.entries++;
    return [entry[0], Buffer.from(entry[1], 'base64')];
  }

  finish(): BackupHeader {
    if (!this.header) throw backupError('the backup is empty');
    if (!this.#ended) throw backupError(`the backup is incomplete: it stops after ${this.entries} entries without its end line`);
    return this.header;
  }
}

function splitLines(chunks: AsyncIterable<string | Buffer>): AsyncIterable<string> {
  return readline.createInterface({ input: Readable.from(chunks), crlfDelay: Infinity });
}

/**
 * Writes backup lines (from the store, or streamed from the daemon) into `dir` as a gzip file
 * and a manifest. `dir` must be new or empty: a backup never overwrites another.
 */
export async function writeBackup(dir: string, lines: AsyncIterable<string | Buffer>): Promise<BackupManifest> {
  if (fs.existsSync(dir) && fs.readdirSync(dir).length > 0) throw backupError(`${dir} is not empty: give a new or empty directory`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, BACKUP_FILE);
  const checker = new BackupChecker();
  const fileHash = crypto.createHash('sha256');
  async function* verified(): AsyncGenerator<string> {
    for await (const raw of splitLines(lines)) {
      if (raw === '') continue;
      checker.line(raw);
      yield `${raw}\n`;
    }
    checker.finish();
  }
  try {
    await pipeline(verified(), zlib.createGzip(), async function* (gz: AsyncIterable<Buffer>) {
      for await (const c of gz) {
        fileHash.update(c);
        yield c;
      }
    }, fs.createWriteStream(file, { mode: 0o600 }));
  } catch (err) {
    fs.rmSync(file, { force: true });
    throw err;
  }
  const manifest: BackupManifest = { ...checker.finish(), entries: checker.entries, sha256: fileHash.digest('hex'), file: BACKUP_FILE };
  fs.writeFileSync(path.join(dir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
  return manifest;
}

export function readManifest(dir: string): BackupManifest {
  const file = path.join(dir, MANIFEST_FILE);
  if (!fs.existsSync(file)) throw backupError(`${dir} holds no mailsync backup (no ${MANIFEST_FILE})`);
  return JSON.parse(fs.readFileSync(file, 'utf8')) as BackupManifest;
}

/**
 * Restores a backup into a new LevelDB at `target` (which must not exist yet). Every line is
 * checked before the store is complete; on any fault the partial store is removed.
 */
export async function restoreInto(dir: string, target: string): Promise<{ entries: number; header: BackupHeader }> {
  const manifest = readManifest(dir);
  const file = path.join(dir, manifest.file);
  if (fs.existsSync(target)) throw backupError(`${target} already exists`);
  const db = new Level<string, Buffer>(target, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  const checker = new BackupChecker();
  try {
    await db.open();
    let batch = db.batch();
    for await (const raw of splitLines(fs.createReadStream(file).pipe(zlib.createGunzip()))) {
      const entry = raw === '' ? null : checker.line(raw);
      if (!entry) continue;
      batch.put(entry[0], entry[1]);
      // bounded batches keep memory flat on large stores
      if (batch.length >= 1_000) {
        await batch.write();
        batch = db.batch();
      }
    }
    checker.finish();
    await batch.write();
    await db.close();
  } catch (err) {
    await db.close().catch(() => undefined);
    fs.rmSync(target, { recursive: true, force: true });
    throw err;
  }
  const entries = checker.entries;
  if (entries !== manifest.entries) {
    fs.rmSync(target, { recursive: true, force: true });
    throw backupError(`the backup holds ${entries} entries but its manifest says ${manifest.entries}`);
  }
  return { entries, header: checker.finish() };
}

/** The key checks a store records (`meta!keys`), read without its keys; null for a store from before them. */
export async function recordedKeyChecks(storePath: string): Promise<Record<string, string> | null> {
  const db = new Level<string, Buffer>(storePath, { keyEncoding: 'utf8', valueEncoding: 'buffer', createIfMissing: false });
  await db.open();
  try {
    const raw = await db.get('meta!keys');
    return raw === undefined ? null : (JSON.parse(raw.subarray(1).toString('utf8')) as Record<string, string>);
  } finally {
    await db.close();
  }
}
