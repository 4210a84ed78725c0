import type { Logger } from 'pino';
import { MailsyncError } from '../errors.js';
import { CONTENT_PREFIXES, CREDENTIAL_PREFIXES, HIGH } from './keys.js';
import type { Store } from './store.js';

/**
 * `mailsync keys rotate`: a new key becomes current, every sealed value is re-sealed under it
 * in small batches while the daemon keeps working, and the older keys leave the key file once
 * nothing sealed under them remains.
 *
 * 1. The new key is written to the key file (atomically, 0600) before anything is sealed under
 *    it, then becomes current: from then on every write seals under it, and every write re-seals
 *    a value put together under an older key just before (`Store.resealOnWrite`).
 * 2. The values that can hold sealed bytes (credentials, and content: messages, sources,
 *    threads, events, relay entries) are read key by key in batches; each batch re-reads its
 *    values and writes them back re-sealed with other writes held back, so it never writes back
 *    a value older than the one stored. Reads go on throughout: the older keys still open what
 *    they sealed.
 * 3. A count of every sealed value must find none under an older key; then the older keys are
 *    removed from the store's key record and from the key file.
 *
 * Stopped half-way (a crash, a stop), the key file holds old and new keys and everything stays
 * readable; running the rotation again finishes the job under yet another new key.
 */

export interface KeyCounts {
  /** Sealed values per key id (ids of the keyring with none included). */
  sealed: Record<string, number>;
  /** Content values stored unsealed (`store.encryptContent` off when they were written). */
  plainContent: number;
}

export interface RotationState {
  state: 'running' | 'done' | 'failed';
  newKeyId: number | null;
  retiredKeyIds: number[];
  /** Sealed values under older keys when the rotation began. */
  toReseal: number;
  resealed: number;
  startedAt: string;
  finishedAt: string | null;
  error: string | null;
}

export interface KeyStatus {
  source: string;
  rotatable: boolean;
  current: number;
  keys: Array<{ id: number; createdAt: string | null; current: boolean; sealed: number }>;
  plainContent: number;
  rotation: RotationState | null;
}

export interface RotationOptions {
  /** Values re-sealed per batch (writers wait for one batch at most). */
  batchSize?: number;
  /** Pause between batches, to spare a busy store. */
  pauseMs?: number;
  onProgress?: (s: RotationState) => void;
}

const SEALABLE = [...CREDENTIAL_PREFIXES, ...CONTENT_PREFIXES];
/** A batch ends once it re-sealed this many bytes, whatever batchSize says. */
const BATCH_BYTES = 8 * 1024 * 1024;
/** More passes than this and something keeps writing old-key values: give up, keep every key. */
const MAX_PASSES = 5;

export class KeyRotation {
  readonly #store: Store;
  readonly #log: Logger;
  #state: RotationState | null = null;
  #running: Promise<RotationState> | null = null;
  #abort: AbortController | null = null;

  constructor(store: Store, log: Logger) {
    this.#store = store;
    this.#log = log;
  }

  get state(): RotationState | null {
    return this.#state && { ...this.#state, retiredKeyIds: [...this.#state.retiredKeyIds] };
  }

  /** Counts sealed values per key id over every value that can hold sealed bytes. */
  async count(): Promise<KeyCounts> {
    const sealed: Record<string, number> = Object.fromEntries(this.#store.keyring.ids.map((id) => [String(id), 0]));
    let plainContent = 0;
    // the database stays open meanwhile (an erasure's purge waits to reopen it)
    const release = await this.#store.hold();
    try {
      for (const prefix of SEALABLE) {
        for await (const [key, raw] of this.#store.db.iterator({ gt: prefix, lt: prefix + HIGH })) {
          const parts = this.#store.sealedParts(key, raw);
          for (const id of parts.keyIds) sealed[String(id)] = (sealed[String(id)] ?? 0) + 1;
          if (parts.plainContent) plainContent++;
        }
      }
    } finally {
      release();
    }
    return { sealed, plainContent };
  }

  async status(): Promise<KeyStatus> {
    const kr = this.#store.keyring;
    const { sealed, plainContent } = await this.count();
    const listed = kr.describe().map((k) => ({ ...k, sealed: sealed[String(k.id)] ?? 0 }));
    // values under a key the keyring lacks cannot be read: show them, do not hide them
    const unknown = Object.keys(sealed).map(Number).filter((id) => !kr.has(id)).map((id) => ({ id, createdAt: null, current: false, sealed: sealed[String(id)]! }));
    return { source: kr.source, rotatable: kr.file !== null, current: kr.current, keys: [...listed, ...unknown], plainContent, rotation: this.state };
  }

  /** Starts a rotation in the background; throws when one runs already. */
  start(opts: RotationOptions = {}): RotationState {
    if (this.#running) throw new MailsyncError('MAILSYNC_ERR_KEY', 'a key rotation is already running');
    this.#store.keyring.assertRotatable();
    this.#abort = new AbortController();
    this.#state = { state: 'running', newKeyId: null, retiredKeyIds: [], toReseal: 0, resealed: 0, startedAt: new Date().toISOString(), finishedAt: null, error: null };
    const state = this.#state;
    this.#running = this.#run(state, opts, this.#abort.signal).finally(() => {
      this.#running = null;
      this.#abort = null;
    });
    return this.state!;
  }

  /** Runs a rotation to its end. */
  async run(opts: RotationOptions = {}): Promise<RotationState> {
    this.start(opts);
    return this.#running!;
  }

  /** Stops a running rotation between batches (the daemon stops); what is done stays done. */
  async stop(): Promise<void> {
    this.#abort?.abort();
    await this.#running?.catch(() => undefined);
  }

  async #run(state: RotationState, opts: RotationOptions, signal: AbortSignal): Promise<RotationState> {
    const store = this.#store;
    const kr = store.keyring;
    const batchSize = Math.max(1, opts.batchSize ?? 500);
    const progress = () => opts.onProgress?.({ ...state });
    try {
      const before = await this.count();
      // everything sealed now is under a key that is about to become old
      state.toReseal = Object.values(before.sealed).reduce((n, c) => n + c, 0);
      await store.withWritesPaused(async () => {
        state.newKeyId = kr.addKey();
        await store.recordKeys();
        store.resealOnWrite = true;
      });
      this.#log.info({ newKeyId: state.newKeyId, toReseal: state.toReseal }, 'key rotation started: new values are sealed under the new key');
      progress();
      for (let pass = 1; ; pass++) {
        for (const prefix of SEALABLE) await this.#resealRange(prefix, batchSize, opts.pauseMs ?? 0, state, signal, progress);
        const { sealed } = await this.count();
        const left = Object.entries(sealed).filter(([id, n]) => Number(id) !== kr.current && n > 0);
        if (left.length === 0) break;
        if (pass >= MAX_PASSES) throw new Error(`after ${pass} passes values are still sealed under ${left.map(([id, n]) => `key ${id} (${n})`).join(', ')}; every key is kept`);
      }
      const retire = kr.ids.filter((id) => id !== kr.current);
      // the store's record first: a crash between the two leaves an unused key in the file, never a missing one
      await store.withWritesPaused(() => store.recordKeys([kr.current]));
      kr.retire(retire);
      state.retiredKeyIds = retire;
      state.state = 'done';
      this.#log.info({ currentKeyId: kr.current, retiredKeyIds: retire, resealed: state.resealed }, 'key rotation finished: older keys retired from the key file');
    } catch (err) {
      state.state = 'failed';
      state.error = signal.aborted ? 'stopped before it finished; run the rotation again' : (err as Error).message;
      this.#log.error({ err: { message: (err as Error).message }, resealed: state.resealed }, 'key rotation did not finish; every key is kept');
    } finally {
      store.resealOnWrite = false;
      state.finishedAt = new Date().toISOString();
      progress();
    }
    return { ...state };
  }

  async #resealRange(prefix: string, batchSize: number, pauseMs: number, state: RotationState, signal: AbortSignal, progress: () => void): Promise<void> {
    const store = this.#store;
    let after = prefix;
    for (;;) {
      if (signal.aborted) throw new Error('stopped');
      const keys = await store.keys(prefix, { after, limit: batchSize });
      if (keys.length === 0) return;
      const { n, last } = await store.withWritesPaused(async () => {
        const puts: Array<{ type: 'put'; key: string; value: Buffer }> = [];
        let bytes = 0;
        let last = keys[keys.length - 1]!;
        for (const key of keys) {
          const raw = store.db.getSync(key);
          const fresh = raw === undefined ? null : store.resealStale(key, raw);
          if (fresh) {
            puts.push({ type: 'put', key, value: fresh });
            bytes += fresh.length;
          }
          // message sources run to megabytes: a batch also ends at a few of them
          if (bytes >= BATCH_BYTES) {
            last = key;
            break;
          }
        }
        if (puts.length) await store.db.batch(puts);
        return { n: puts.length, last };
      });
      after = last;
      if (n) {
        state.resealed += n;
        progress();
      }
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    }
  }
}
