import fs from 'node:fs';
import { Level } from 'level';
import { MailsyncError } from '../errors.js';
import { Sealer, IdHasher, sealedKeyId } from './crypto.js';
import { Keyring } from './keyring.js';
import { CONTENT_PREFIXES, CREDENTIAL_PREFIXES, HIGH, K } from './keys.js';

/**
 * The LevelDB store: typed JSON values, content sealed when configured, atomic batches, and
 * one async lock for read-modify-write changes (LevelDB has no transactions; every change that
 * reads before it writes runs inside `exclusive`, so two workers never interleave).
 */

const LAYOUT_VERSION = 1;

export interface StoreOptions {
  path: string;
  /** The keys that seal values; or `masterKey`, a keyring of that one key. */
  keyring?: Keyring;
  masterKey?: Buffer;
  encryptContent: boolean;
}

/** What a stored value holds sealed: the key ids, and whether it is content stored unsealed. */
export interface SealedParts {
  keyIds: number[];
  plainContent: boolean;
}

export type Op = { type: 'put'; key: string; value: Buffer } | { type: 'del'; key: string };

export class WriteBatch {
  readonly ops: Op[] = [];
  readonly #store: Store;
  /** Callbacks run after the batch is written (e.g. waking the webhook dispatcher). */
  readonly afterWrite: Array<() => void> = [];

  constructor(store: Store) {
    this.#store = store;
  }

  put(key: string, value: unknown): this {
    this.ops.push({ type: 'put', key, value: this.#store.encode(key, value) });
    return this;
  }

  putRaw(key: string, value: Buffer): this {
    this.ops.push({ type: 'put', key, value: this.#store.encodeBytes(key, value) });
    return this;
  }

  del(key: string): this {
    this.ops.push({ type: 'del', key });
    return this;
  }

  get size(): number {
    return this.ops.length;
  }

  async write(): Promise<void> {
    if (this.ops.length) await this.#store.writeOps(this.ops);
    for (const fn of this.afterWrite.splice(0)) fn();
  }
}

export class Store {
  readonly db: Level<string, Buffer>;
  readonly keyring: Keyring;
  readonly #content: Sealer;
  readonly #secrets: Sealer;
  readonly idHasher: IdHasher;
  readonly #encryptContent: boolean;
  #lock: Promise<unknown> = Promise.resolve();
  /** Set while the database is closed and opened again (see `purgeDeleted`); operations wait for it. */
  #reopening: Promise<void> | null = null;
  /** Reads and writes running against the open database, and long holds (a backup's iterator). */
  readonly #busy = new Set<Promise<unknown>>();
  /** Set by `close`: a purge running then does not open the database again. */
  #closing = false;
  /** Set while writes are held back (a key rotation's batch); writers wait for it. */
  #paused: Promise<void> | null = null;
  #writing = 0;
  #drained: (() => void) | null = null;
  /**
   * While a rotation runs, every write re-seals values sealed under an older key: a batch put
   * together before the new key became current must not land old-key values the rotation has
   * already passed over.
   */
  resealOnWrite = false;

  private constructor(opts: StoreOptions) {
    fs.mkdirSync(opts.path, { recursive: true, mode: 0o700 });
    this.db = new Level<string, Buffer>(opts.path, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
    const keyring = opts.keyring ?? (opts.masterKey ? Keyring.fromKey(opts.masterKey) : null);
    if (!keyring) throw new Error('Store.open needs a keyring or a master key');
    this.keyring = keyring;
    this.#content = new Sealer(keyring, 'content');
    this.#secrets = new Sealer(keyring, 'credentials');
    this.idHasher = new IdHasher(keyring.idHashKey);
    this.#encryptContent = opts.encryptContent;
  }

  static async open(opts: StoreOptions): Promise<Store> {
    const store = new Store(opts);
    try {
      await store.db.open();
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      if (cause?.code === 'LEVEL_LOCKED') {
        throw new Error(`the store at ${opts.path} is in use by another mailsync process (LevelDB allows one); stop it first or give this one its own store.path`, { cause: err });
      }
      throw new Error(`the store at ${opts.path} cannot be opened: ${cause && 'message' in cause ? String(cause.message) : (err as Error).message}`, { cause: err });
    }
    const version = await store.get<number>(K.version());
    if (version === undefined) await store.db.put(K.version(), store.encode(K.version(), LAYOUT_VERSION));
    else if (version > LAYOUT_VERSION) {
      await store.db.close();
      throw new Error(`the store at ${opts.path} has layout version ${version}; this mailsync knows up to ${LAYOUT_VERSION}: upgrade mailsync`);
    }
    try {
      await store.#verifyKeys();
    } catch (err) {
      await store.db.close();
      throw err;
    }
    return store;
  }

  /**
   * Refuses a key file that does not belong to this store before anything is written: each key
   * id the store knows must be in the keyring with the same key. A store from before these
   * checks is tried on one sealed value instead. Then the keyring's ids are recorded.
   */
  async #verifyKeys(): Promise<void> {
    const kr = this.keyring;
    const recorded = await this.get<Record<string, string>>(K.keyChecks());
    const wrong = (why: string) => new MailsyncError('MAILSYNC_ERR_KEY', `${kr.source} does not belong to the store at ${this.db.location}: ${why}. Put back the key file that belongs to this store (nothing was changed)`);
    if (recorded) {
      for (const [idText, check] of Object.entries(recorded)) {
        const id = Number(idText);
        if (!kr.has(id)) throw wrong(`the store has values sealed under key ${id}, which it does not hold (it holds ${kr.ids.map((i) => `key ${i}`).join(', ')})`);
        if (kr.keyCheck(id) !== check) throw wrong(`its key ${id} is not the key ${id} this store was sealed with`);
      }
    } else {
      const sample = await this.#sealedSample();
      if (sample) {
        try {
          sample();
        } catch (err) {
          if (err instanceof MailsyncError && err.code === 'MAILSYNC_ERR_DECRYPT') throw wrong('the values in the store cannot be decrypted with it');
          throw err;
        }
      }
    }
    await this.recordKeys();
  }

  /** Opening one sealed value of the store, if it has any. */
  async #sealedSample(): Promise<(() => void) | null> {
    for (const [, mbx] of await this.db.iterator({ gt: 'mbx!', lt: `mbx!${HIGH}`, limit: 1 }).all()) {
      const sealed = (this.decode<{ sealedCredentials?: string }>(mbx)).sealedCredentials;
      if (sealed) return () => this.openSecret(sealed);
    }
    for (const prefix of CONTENT_PREFIXES) {
      for (const [, value] of await this.db.iterator({ gt: prefix, lt: prefix + HIGH, limit: 1 }).all()) {
        if (value[0] === 1) return () => this.decodeBytes(value);
      }
    }
    return null;
  }

  /** Records which key ids this store uses, with a check value of each (after a rotation changed them). */
  async recordKeys(ids = this.keyring.ids): Promise<void> {
    const checks = Object.fromEntries(ids.map((id) => [String(id), this.keyring.keyCheck(id)]));
    await this.db.put(K.keyChecks(), this.encode(K.keyChecks(), checks));
  }

  get isOpen(): boolean {
    return this.db.status === 'open' || this.#reopening !== null;
  }

  async close(): Promise<void> {
    this.#closing = true;
    while (this.#reopening) await this.#reopening;
    if (this.db.status === 'open' || this.db.status === 'opening') await this.db.close();
  }

  #sealed(key: string): boolean {
    return this.#encryptContent && CONTENT_PREFIXES.some((p) => key.startsWith(p));
  }

  encode(key: string, value: unknown): Buffer {
    return this.encodeBytes(key, Buffer.from(JSON.stringify(value), 'utf8'));
  }

  encodeBytes(key: string, value: Buffer): Buffer {
    // A leading byte tells sealed (1) from plain (0) values, so turning encryptContent
    // on or off never makes existing records unreadable.
    return this.#sealed(key) ? Buffer.concat([Buffer.from([1]), this.#content.seal(value)]) : Buffer.concat([Buffer.from([0]), value]);
  }

  decodeBytes(value: Buffer): Buffer {
    return value[0] === 1 ? this.#content.open(value.subarray(1)) : value.subarray(1);
  }

  decode<T>(value: Buffer): T {
    return JSON.parse(this.decodeBytes(value).toString('utf8')) as T;
  }

  /** Credentials are always sealed, with their own key. */
  sealSecret(value: unknown): string {
    return this.#secrets.seal(Buffer.from(JSON.stringify(value), 'utf8')).toString('base64');
  }

  openSecret<T>(sealed: string): T {
    return JSON.parse(this.#secrets.open(Buffer.from(sealed, 'base64')).toString('utf8')) as T;
  }

  /** Which keys a stored value (as read from LevelDB) is sealed under. */
  sealedParts(key: string, raw: Buffer): SealedParts {
    if (CONTENT_PREFIXES.some((p) => key.startsWith(p))) {
      const id = raw[0] === 1 ? sealedKeyId(raw.subarray(1)) : null;
      return { keyIds: id === null ? [] : [id], plainContent: raw[0] !== 1 };
    }
    if (CREDENTIAL_PREFIXES.some((p) => key.startsWith(p)) && raw[0] === 0) {
      const sealed = (JSON.parse(raw.subarray(1).toString('utf8')) as { sealedCredentials?: string }).sealedCredentials;
      const id = sealed ? sealedKeyId(Buffer.from(sealed, 'base64')) : null;
      return { keyIds: id === null ? [] : [id], plainContent: false };
    }
    return { keyIds: [], plainContent: false };
  }

  /**
   * The value re-sealed under the current key, or null when nothing in it is sealed under
   * another key. Plain values stay plain: a rotation changes keys, not what is encrypted.
   */
  resealStale(key: string, raw: Buffer): Buffer | null {
    const current = this.keyring.current;
    if (!this.sealedParts(key, raw).keyIds.some((id) => id !== current)) return null;
    if (raw[0] === 1) return Buffer.concat([Buffer.from([1]), this.#content.seal(this.#content.open(raw.subarray(1)))]);
    const record = JSON.parse(raw.subarray(1).toString('utf8')) as { sealedCredentials: string };
    const resealed = this.#secrets.seal(this.#secrets.open(Buffer.from(record.sealedCredentials, 'base64'))).toString('base64');
    return Buffer.concat([Buffer.from([0]), Buffer.from(JSON.stringify({ ...record, sealedCredentials: resealed }), 'utf8')]);
  }

  /**
   * Runs `fn` with no batch write in flight and none starting until it ends, and the database
   * kept open (no purge reopens it): what `fn` reads with getSync and writes cannot be
   * overtaken by another writer (a key rotation's re-seal never writes back a value older than
   * the one stored). Keep `fn` short: writers wait.
   */
  async withWritesPaused<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#paused) await this.#paused;
    let release!: () => void;
    this.#paused = new Promise<void>((r) => (release = r));
    let unhold: (() => void) | null = null;
    try {
      unhold = await this.hold();
      if (this.#writing > 0) await new Promise<void>((r) => (this.#drained = r));
      this.#drained = null;
      return await fn();
    } finally {
      unhold?.();
      this.#paused = null;
      release();
    }
  }

  // Point reads are synchronous (classic-level's getSync): they are served from LevelDB's
  // memtable and block cache in microseconds, while a read through the libuv thread pool costs a
  // round trip that, on a busy machine, reaches milliseconds — and read-modify-write changes
  // hold the store lock across several reads.
  async get<T>(key: string): Promise<T | undefined> {
    if (this.#reopening) await this.#whileReopening();
    const v = this.db.getSync(key);
    return v === undefined ? undefined : this.decode<T>(v);
  }

  async getBytes(key: string): Promise<Buffer | undefined> {
    if (this.#reopening) await this.#whileReopening();
    const v = this.db.getSync(key);
    return v === undefined ? undefined : this.decodeBytes(v);
  }

  async getMany<T>(keys: string[]): Promise<Array<T | undefined>> {
    if (this.#reopening) await this.#whileReopening();
    return keys.map((k) => {
      const v = this.db.getSync(k);
      return v === undefined ? undefined : this.decode<T>(v);
    });
  }

  async has(key: string): Promise<boolean> {
    if (this.#reopening) await this.#whileReopening();
    return this.db.getSync(key) !== undefined;
  }

  /** Keys under a prefix, in order. */
  async keys(prefix: string, opts: { limit?: number; after?: string; reverse?: boolean } = {}): Promise<string[]> {
    const range = { gt: opts.after && opts.after > prefix ? opts.after : prefix, lt: prefix + HIGH, limit: opts.limit ?? -1, reverse: opts.reverse ?? false };
    if (this.#reopening) await this.#whileReopening();
    // all(): one read of the whole range instead of one per key (each a thread-pool round trip)
    return this.#track(this.db.keys(range).all());
  }

  /** Entries under a prefix, decoded. */
  async entries<T>(prefix: string, opts: { limit?: number; after?: string } = {}): Promise<Array<[string, T]>> {
    const range = { gt: opts.after && opts.after > prefix ? opts.after : prefix, lt: prefix + HIGH, limit: opts.limit ?? -1 };
    if (this.#reopening) await this.#whileReopening();
    return (await this.#track(this.db.iterator(range).all())).map(([key, value]): [string, T] => [key, this.decode<T>(value)]);
  }

  batch(): WriteBatch {
    return new WriteBatch(this);
  }

  /** Writes a batch's operations (WriteBatch.write). */
  async writeOps(ops: Op[]): Promise<void> {
    for (;;) {
      if (this.#reopening) await this.#whileReopening();
      else if (this.#paused) await this.#paused;
      else break;
    }
    if (this.resealOnWrite) {
      ops = ops.map((op) => {
        const fresh = op.type === 'put' ? this.resealStale(op.key, op.value) : null;
        return fresh ? { ...op, value: fresh } : op;
      });
    }
    this.#writing++;
    try {
      await this.#track(this.db.batch(ops));
    } finally {
      if (--this.#writing === 0) this.#drained?.();
    }
  }

  /**
   * Keeps the database open (not reopened by `purgeDeleted`) until the returned function is
   * called: for a reader that holds an iterator across awaits, such as a backup. An open
   * iterator also keeps the values it can see alive in the files, so a purge waits for it.
   */
  async hold(): Promise<() => void> {
    if (this.#reopening) await this.#whileReopening();
    let release!: () => void;
    this.#track(new Promise<void>((r) => (release = r)));
    return release;
  }

  async #whileReopening(): Promise<void> {
    while (this.#reopening) await this.#reopening;
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#busy.add(p);
    void p.then(() => this.#busy.delete(p), () => this.#busy.delete(p));
    return p;
  }

  /** Resolves once every read, write and hold that started before the call has ended. */
  async #drain(): Promise<void> {
    await Promise.allSettled([...this.#busy]);
  }

  /**
   * Runs `fn` alone among all other `exclusive` calls. Read-modify-write changes (threads,
   * events, mailbox state) go through here so their reads and their batch are one step.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn, fn);
    this.#lock = run.catch(() => undefined);
    return run;
  }

  /**
   * Makes every write made so far durable on disk (fsync), for a promise given to someone else
   * (an SMTP client told `250`). Callers arriving together share one fsync ("group commit"):
   * one that arrives while a flush runs waits for the next, which also covers its write.
   */
  flush(): Promise<void> {
    if (!this.#flushing) {
      this.#flushing = (async () => {
        if (this.#reopening) await this.#whileReopening();
        await this.#track(this.db.put(K.flush(), this.encode(K.flush(), 0), { sync: true }));
      })().finally(() => {
        this.#flushing = null;
      });
      return this.#flushing;
    }
    this.#nextFlush ??= this.#flushing.catch(() => undefined).then(() => {
      this.#nextFlush = null;
      return this.flush();
    });
    return this.#nextFlush;
  }

  #flushing: Promise<void> | null = null;
  #nextFlush: Promise<void> | null = null;

  /**
   * Compacts the key ranges under these prefixes so values deleted there leave the files: LevelDB
   * first writes its memtable out and drops the write-ahead log (.log) that still holds every
   * recent value, then merges the files holding the ranges level by level, which drops deleted
   * and overwritten values. Only a snapshot still open (a running backup) keeps old values alive
   * until it closes.
   *
   * A value written and deleted while both were still in the memtable goes out in one table
   * file with its deletion, and a compaction leaves a file alone when no file of a deeper level
   * overlaps it: the value would stay on disk. So each range is compacted a second time after a
   * deletion marker at each end of it (keys that hold nothing) went into a newer file above:
   * merging that file with the old one drops the value.
   */
  async compactPrefixes(prefixes: string[]): Promise<void> {
    for (const p of prefixes) {
      await this.#compactRange(p, p + MARKER_END);
      // the prefix itself may be a key of the range (mbx!{userId}): as a marker only when it holds nothing
      const low = (await this.has(p)) ? `${p}\x00` : p;
      await this.writeOps([{ type: 'del', key: low }, { type: 'del', key: p + MARKER_END }]);
      await this.#compactRange(p, p + MARKER_END);
    }
  }

  /**
   * Compacts the whole key range so deleted values leave the table files (see `purgeDeleted`
   * for the MANIFEST and the LOG). Merging every level into the deepest one drops each old value
   * where it meets its deletion; a file already in the deepest level is never rewritten on its
   * own, though, and one written out from the memtable with both a value and its deletion lands
   * there when the store has no level below the third (under about 100 MB). For such a store a
   * second pass runs after deletion markers at both ends of the key space went into a newer
   * file above every other: it rewrites all of them (cheap at that size). A larger store does
   * not need it: the memtable's file then sits above the deepest level and was merged down.
   */
  async compact(): Promise<void> {
    await this.#track(this.#compactRange(FIRST_KEY, LAST_KEY));
    if (this.#deepestLevel() <= 2) {
      await this.writeOps([{ type: 'del', key: FIRST_KEY }, { type: 'del', key: LAST_KEY }]);
      await this.#track(this.#compactRange(FIRST_KEY, LAST_KEY));
    }
  }

  #deepestLevel(): number {
    const db = this.db as unknown as { getProperty(p: string): string };
    let deepest = -1;
    for (let level = 0; level < 7; level++) if (Number(db.getProperty(`leveldb.num-files-at-level${level}`)) > 0) deepest = level;
    return deepest;
  }

  /**
   * Writes LevelDB's in-memory table out to a table file and starts a new write-ahead log.
   * Call right before a batch that deletes or overwrites values that must leave the files: see
   * `purgeDeleted` for why the old values must not share a table file with their deletions.
   */
  async flushMemtable(): Promise<void> {
    if (this.#reopening) await this.#whileReopening();
    // a compaction of an empty range: LevelDB writes the memtable out first, and finds no file
    await this.#track(this.#compactRange(EMPTY_RANGE, EMPTY_RANGE));
  }

  /**
   * Makes values deleted or overwritten so far leave the database's files, not only its view
   * (a data-protection erasure). LevelDB keeps them on disk until compactions merge them with
   * their deletions, and keeps keys in two more places: the MANIFEST (the first and last key
   * of every table file it ever listed) and the LOG (a manual compaction names the key it
   * stopped at). So, in this order:
   *
   * 1. wait for reads and holds that started earlier: an open iterator's snapshot keeps the
   *    values it sees alive through a compaction;
   * 2. compact the whole key range (`compact`): the memtable goes to a table file and the
   *    write-ahead log holding the deletions is dropped, then every level is merged down into
   *    the deepest one, and each old value meets its deletion and is dropped. A value and its
   *    deletion written out in the same file could stay in the deepest level: `compact` takes a
   *    second pass where that can happen, and a caller that can call `flushMemtable` before its
   *    deleting batch keeps them apart from the start (the deletion lands in a newer file);
   * 3. close and open the database twice: opening writes a fresh MANIFEST listing only the
   *    current files, and starts a new LOG (the previous one becomes LOG.old, replaced by the
   *    short LOG of the first reopening at the second).
   *
   * Reads and writes made meanwhile wait while the database reopens (milliseconds); the
   * compaction costs about as much as rewriting the store once.
   */
  async purgeDeleted(): Promise<void> {
    if (this.#reopening) await this.#whileReopening();
    if (this.#closing) return;
    await this.#drain();
    await this.compact();
    await this.reopen();
    await this.reopen();
  }

  #compactRange(from: string, to: string): Promise<void> {
    // classic-level has it; the `level` package's types leave it out
    return (this.db as unknown as { compactRange: (a: string, b: string) => Promise<void> }).compactRange(from, to);
  }

  /** Closes and opens the database again; operations arriving meanwhile wait. */
  async reopen(): Promise<void> {
    while (this.#reopening) await this.#reopening;
    if (this.#closing) return; // stopping: the next start opens it
    let done!: () => void;
    this.#reopening = new Promise<void>((r) => (done = r));
    try {
      await this.#drain();
      await this.db.close();
      await this.db.open();
    } finally {
      this.#reopening = null;
      done();
    }
  }
}

/** Sorts before every key (all start with a lower-case prefix) and after every key. */
const FIRST_KEY = '\x00';
const LAST_KEY = '\uffff';
/** A range that holds no key. */
const EMPTY_RANGE = '\x00';
/** After every key under a prefix (no key holds U+FFFF, a noncharacter). */
const MARKER_END = '\uffff';
