import fs from 'node:fs';
import { Level } from 'level';
import { Sealer, IdHasher } from './crypto.js';
import { CONTENT_PREFIXES, HIGH, K } from './keys.js';

/**
 * The LevelDB store: typed JSON values, content sealed when configured, atomic batches, and
 * one async lock for read-modify-write changes (LevelDB has no transactions; every change that
 * reads before it writes runs inside `exclusive`, so two workers never interleave).
 */

const LAYOUT_VERSION = 1;

export interface StoreOptions {
  path: string;
  masterKey: Buffer;
  encryptContent: boolean;
}

type Op = { type: 'put'; key: string; value: Buffer } | { type: 'del'; key: string };

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
    if (this.ops.length) await this.#store.db.batch(this.ops);
    for (const fn of this.afterWrite.splice(0)) fn();
  }
}

export class Store {
  readonly db: Level<string, Buffer>;
  readonly #content: Sealer;
  readonly #secrets: Sealer;
  readonly idHasher: IdHasher;
  readonly #encryptContent: boolean;
  #lock: Promise<unknown> = Promise.resolve();

  private constructor(opts: StoreOptions) {
    fs.mkdirSync(opts.path, { recursive: true, mode: 0o700 });
    this.db = new Level<string, Buffer>(opts.path, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
    this.#content = new Sealer(opts.masterKey, 'content');
    this.#secrets = new Sealer(opts.masterKey, 'credentials');
    this.idHasher = new IdHasher(opts.masterKey);
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
    return store;
  }

  get isOpen(): boolean {
    return this.db.status === 'open';
  }

  async close(): Promise<void> {
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

  // Point reads are synchronous (classic-level's getSync): they are served from LevelDB's
  // memtable and block cache in microseconds, while a read through the libuv thread pool costs a
  // round trip that, on a busy machine, reaches milliseconds — and read-modify-write changes
  // hold the store lock across several reads.
  async get<T>(key: string): Promise<T | undefined> {
    const v = this.db.getSync(key);
    return v === undefined ? undefined : this.decode<T>(v);
  }

  async getBytes(key: string): Promise<Buffer | undefined> {
    const v = this.db.getSync(key);
    return v === undefined ? undefined : this.decodeBytes(v);
  }

  async getMany<T>(keys: string[]): Promise<Array<T | undefined>> {
    return keys.map((k) => {
      const v = this.db.getSync(k);
      return v === undefined ? undefined : this.decode<T>(v);
    });
  }

  async has(key: string): Promise<boolean> {
    return this.db.getSync(key) !== undefined;
  }

  /** Keys under a prefix, in order. */
  async keys(prefix: string, opts: { limit?: number; after?: string; reverse?: boolean } = {}): Promise<string[]> {
    const range = { gt: opts.after && opts.after > prefix ? opts.after : prefix, lt: prefix + HIGH, limit: opts.limit ?? -1, reverse: opts.reverse ?? false };
    // all(): one read of the whole range instead of one per key (each a thread-pool round trip)
    return this.db.keys(range).all();
  }

  /** Entries under a prefix, decoded. */
  async entries<T>(prefix: string, opts: { limit?: number; after?: string } = {}): Promise<Array<[string, T]>> {
    const range = { gt: opts.after && opts.after > prefix ? opts.after : prefix, lt: prefix + HIGH, limit: opts.limit ?? -1 };
    return (await this.db.iterator(range).all()).map(([key, value]): [string, T] => [key, this.decode<T>(value)]);
  }

  batch(): WriteBatch {
    return new WriteBatch(this);
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
      this.#flushing = this.db.put(K.flush(), this.encode(K.flush(), 0), { sync: true }).finally(() => {
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
   * Compacts the key ranges under these prefixes: LevelDB first writes its memtable out and
   * drops the write-ahead log (.log) that still holds every recent value, then merges the
   * files holding the ranges level by level, which drops deleted and overwritten values. Only
   * a snapshot still open (a running backup) keeps old values alive until it closes.
   */
  async compactPrefixes(prefixes: string[]): Promise<void> {
    const db = this.db as unknown as { compactRange: (a: string, b: string) => Promise<void> };
    for (const p of prefixes) await db.compactRange(p, p + HIGH);
  }

  /** Compacts the whole key range so deleted values leave the files (erasure). */
  async compact(): Promise<void> {
    const db = this.db as unknown as { compactRange?: (a: string, b: string) => Promise<void> };
    if (db.compactRange) await db.compactRange('', HIGH);
  }
}
