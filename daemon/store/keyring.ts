import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { MailsyncError } from '../errors.js';
import { deriveKey } from './crypto.js';

/**
 * The keys that seal values at rest, read from `store.keyFile` (or `store.key`). Two formats:
 *
 * - one line of 64 hex characters: a single key, id 1 (every installation starts so, and
 *   `store.key` is always this);
 * - a keyring (JSON), written by `mailsync keys rotate`:
 *   `{"format":"mailsync-keyring","version":1,"current":2,"keys":[{"id":2,"key":"<hex>",
 *   "createdAt":"…"}],"idHashKey":"<hex>","messageIdStampKey":"<hex>"}`.
 *
 * New values are sealed under the current key; every sealed value records the id of its key,
 * so older keys keep opening what they sealed until a rotation has re-sealed it and retired
 * them. The keys for id hashes (pending references) and for Message-ID stamps are keyed MACs of
 * values that live outside the store (ids in other people's mail), so they cannot be
 * re-computed: they are derived once from key 1 and kept as they are. They open nothing, and
 * key 1 cannot be derived back from them.
 */

const FORMAT = 'mailsync-keyring';
const HEX64 = /^[0-9a-f]{64}$/i;

export interface KeySource {
  /** 64 hex characters; wins when set. */
  key?: string;
  /** Created with mode 0600 when missing and allowed. */
  keyFile: string;
}

interface KeyEntry {
  id: number;
  key: Buffer;
  createdAt: string | null;
}

interface KeyringFile {
  format: typeof FORMAT;
  version: 1;
  current: number;
  keys: Array<{ id: number; key: string; createdAt: string | null }>;
  idHashKey: string;
  messageIdStampKey: string;
}

export class Keyring {
  /** Where the keys come from, for messages: `the key file <path>` or `store.key`. */
  readonly source: string;
  /** The key file, or null when the key comes from `store.key` (which cannot be rotated). */
  readonly file: string | null;
  readonly idHashKey: Buffer;
  readonly stampKey: Buffer;
  #keys: Map<number, KeyEntry>;
  #current: number;

  private constructor(opts: { file: string | null; source: string; keys: KeyEntry[]; current: number; idHashKey: Buffer; stampKey: Buffer }) {
    this.file = opts.file;
    this.source = opts.source;
    this.#keys = new Map(opts.keys.map((k) => [k.id, k]));
    this.#current = opts.current;
    this.idHashKey = opts.idHashKey;
    this.stampKey = opts.stampKey;
  }

  /** A keyring of one key, id 1 (the one-line format, `store.key`, tests). */
  static fromKey(key: Buffer, file: string | null = null, source = file ? `the key file ${file}` : 'store.key'): Keyring {
    return new Keyring({
      file, source, keys: [{ id: 1, key, createdAt: null }], current: 1,
      idHashKey: deriveKey(key, 'mailsync:idhash'), stampKey: deriveKey(key, 'mailsync:message-id-stamp'),
    });
  }

  /** Parses the text of a key file (either format); errors name `file`. */
  static parse(text: string, file: string): Keyring {
    const source = `the key file ${file}`;
    const trimmed = text.trim();
    if (HEX64.test(trimmed)) return Keyring.fromKey(Buffer.from(trimmed, 'hex'), file);
    const bad = (why: string) => new MailsyncError('MAILSYNC_ERR_KEY', `${source} (store.keyFile) is damaged: ${why}. Put back your copy of it; mailsync has not changed the store`);
    if (trimmed === '') throw bad('it is empty');
    if (!trimmed.startsWith('{')) throw bad('it holds neither a key (64 hexadecimal characters) nor a mailsync keyring (JSON)');
    let doc: KeyringFile;
    try {
      doc = JSON.parse(trimmed) as KeyringFile;
    } catch {
      throw bad('it is not valid JSON');
    }
    if (doc?.format !== FORMAT || doc.version !== 1) throw bad(`it is not a mailsync keyring of version 1 ("format": "${FORMAT}")`);
    if (!Array.isArray(doc.keys) || doc.keys.length === 0) throw bad('it lists no keys');
    const keys: KeyEntry[] = [];
    for (const k of doc.keys) {
      if (!Number.isInteger(k?.id) || k.id < 1 || k.id > 0xffffffff) throw bad('a key has no valid id');
      if (typeof k.key !== 'string' || !HEX64.test(k.key)) throw bad(`key ${k.id} is not 64 hexadecimal characters`);
      if (keys.some((e) => e.id === k.id)) throw bad(`key ${k.id} is listed twice`);
      keys.push({ id: k.id, key: Buffer.from(k.key, 'hex'), createdAt: typeof k.createdAt === 'string' ? k.createdAt : null });
    }
    if (!keys.some((k) => k.id === doc.current)) throw bad(`its current key ${String(doc.current)} is not among its keys`);
    for (const field of ['idHashKey', 'messageIdStampKey'] as const) {
      if (typeof doc[field] !== 'string' || !HEX64.test(doc[field])) throw bad(`${field} is not 64 hexadecimal characters`);
    }
    return new Keyring({
      file, source, keys, current: doc.current,
      idHashKey: Buffer.from(doc.idHashKey, 'hex'), stampKey: Buffer.from(doc.messageIdStampKey, 'hex'),
    });
  }

  /**
   * Reads the keys: `store.key` when set, else the key file. A missing key file is created
   * (mode 0600) only when `storePath` names no existing store: a new key for an existing store
   * would leave its credentials and content unreadable, so that is an error naming the file.
   * `warnings`: a key file others can read.
   */
  static load(src: KeySource, opts: { storePath?: string } = {}): { keyring: Keyring; warnings: string[] } {
    if (src.key) {
      if (!HEX64.test(src.key)) throw new MailsyncError('MAILSYNC_ERR_KEY', 'store.key must be 64 hexadecimal characters');
      return { keyring: Keyring.fromKey(Buffer.from(src.key, 'hex')), warnings: [] };
    }
    const file = path.resolve(src.keyFile);
    if (!fs.existsSync(file)) {
      if (opts.storePath && fs.existsSync(path.join(opts.storePath, 'CURRENT'))) {
        throw new MailsyncError('MAILSYNC_ERR_KEY', `the key file ${src.keyFile} (store.keyFile) does not exist, but the store at ${opts.storePath} does, sealed with the key(s) that file held: put the file back from your copy. mailsync does not make a new key for an existing store (its credentials and content could never be read again)`);
      }
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      try {
        // 'wx': never overwrite a key another process created meanwhile
        fs.writeFileSync(file, `${crypto.randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new MailsyncError('MAILSYNC_ERR_KEY', `the key file ${src.keyFile} (store.keyFile) cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const keyring = Keyring.parse(text, src.keyFile);
    const mode = fs.statSync(file).mode & 0o777;
    const warnings = mode & 0o077 ? [`the key file ${src.keyFile} can be read by others (mode 0${mode.toString(8)}): chmod 600 ${src.keyFile}`] : [];
    return { keyring, warnings };
  }

  get current(): number {
    return this.#current;
  }

  /** Key ids, oldest first. */
  get ids(): number[] {
    return [...this.#keys.keys()].sort((a, b) => a - b);
  }

  /** What may be shown about the keys: ids, dates, which is current — never key material. */
  describe(): Array<{ id: number; createdAt: string | null; current: boolean }> {
    return this.ids.map((id) => ({ id, createdAt: this.#keys.get(id)!.createdAt, current: id === this.#current }));
  }

  has(id: number): boolean {
    return this.#keys.has(id);
  }

  key(id: number): Buffer {
    const k = this.#keys.get(id);
    if (!k) throw new MailsyncError('MAILSYNC_ERR_KEY', `a stored value is sealed under key ${id}, which ${this.source} does not hold (it holds ${this.ids.map((i) => `key ${i}`).join(', ')}): put back the key file that belongs to this store`);
    return k.key;
  }

  /** A keyed check value of one key: equal only for the same key material. */
  keyCheck(id: number): string {
    return crypto.createHmac('sha256', deriveKey(this.key(id), 'mailsync:key-check')).update('mailsync:key-check').digest('hex').slice(0, 32);
  }

  /**
   * Adds a new random key and makes it current. The key file is written first (atomically,
   * mode 0600): nothing is ever sealed under a key that is not safely on disk. Returns its id.
   */
  addKey(): number {
    this.#assertFile();
    const id = Math.max(...this.#keys.keys()) + 1;
    const entry: KeyEntry = { id, key: crypto.randomBytes(32), createdAt: new Date().toISOString() };
    this.#save([...this.#keys.values(), entry], id);
    this.#keys.set(id, entry);
    this.#current = id;
    return id;
  }

  /** Removes keys (never the current one) from the file, then from memory. */
  retire(ids: number[]): void {
    this.#assertFile();
    if (ids.includes(this.#current)) throw new Error('the current key cannot be retired');
    const keep = [...this.#keys.values()].filter((k) => !ids.includes(k.id));
    this.#save(keep, this.#current);
    for (const id of ids) this.#keys.delete(id);
  }

  /** Throws, saying what to do, when the keys cannot be rotated (they come from store.key). */
  assertRotatable(): void {
    this.#assertFile();
  }

  #assertFile(): void {
    if (!this.file) {
      throw new MailsyncError('MAILSYNC_ERR_KEY', 'the key comes from store.key (MAILSYNC_STORE_KEY), which mailsync cannot change: rotation writes the new key into a key file. Put the key into store.keyFile (one line of 64 hexadecimal characters, mode 0600), unset store.key, restart, and rotate then');
    }
  }

  #save(keys: KeyEntry[], current: number): void {
    const doc: KeyringFile = {
      format: FORMAT, version: 1, current,
      keys: keys.map((k) => ({ id: k.id, key: k.key.toString('hex'), createdAt: k.createdAt })),
      idHashKey: this.idHashKey.toString('hex'), messageIdStampKey: this.stampKey.toString('hex'),
    };
    writeFileAtomic(path.resolve(this.file!), `${JSON.stringify(doc, null, 2)}\n`);
  }
}

/** Write to a temporary file, fsync, rename over the target, fsync the directory: the file is either old or new, never half. */
function writeFileAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.chmodSync(tmp, 0o600);
  fs.renameSync(tmp, file);
  const dir = fs.openSync(path.dirname(file), 'r');
  try {
    fs.fsyncSync(dir);
  } finally {
    fs.closeSync(dir);
  }
}
