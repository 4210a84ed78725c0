import tls from 'node:tls';
import { ImapFlow } from 'imapflow';
import type { Logger } from 'pino';
import type { Accounts } from '../store/accounts.js';
import type { Threads, Location } from '../store/threads.js';
import type { Store } from '../store/store.js';
import type { FolderState, MailboxRecord, MailboxState } from '../store/records.js';
import { Backoff } from './backoff.js';
import { MissingUids, MISSING_RETRY_MS } from './missing-uids.js';
import { probeConnection } from './idle-watchdog.js';
import { classifyError } from './error-classifier.js';
import { connectImap, type ConnectionGate } from './imap-connect.js';
import type { LoginAuth, MailboxLogins } from './oauth2-tokens.js';
import { imapLogger, withProviderHints } from './provider-errors.js';
import { scopeProviderIds } from './gmail.js';
import { fetchHeaderRecords, fetchSourcesBySize, resolveFolders, toRanges, uidWindows, type WatchedFolder } from './imap-folders.js';
import type { HeaderRecord, Ingestor } from './ingestor.js';

/**
 * One consenting user's mailbox: connect, catch up INBOX and Sent, then IDLE on INBOX and
 * fetch new mail the moment EXISTS arrives. Mailboxes are opened with EXAMINE and fetched
 * with BODY.PEEK: nothing in the mailbox ever changes. The worker owns its reconnect loop;
 * a closed imapflow client is never reused.
 */

export interface WorkerSettings {
  allowPlaintext: boolean;
  tlsCa: Buffer | null;
  sentPollMs: number;
  idleRefreshMs: number;
  connectTimeoutMs: number;
  socketTimeoutMs: number;
  /** A NOOP after a quiet IDLE period must be answered this fast, or the connection is replaced. */
  probeTimeoutMs: number;
  fetchBatchSize: number;
  backoff: { minMs: number; maxMs: number; resetAfterMs: number };
  initialWindowDays: number;
  maxRawBytes: number;
  /** Messages larger than this are not fetched: stored with their header fields, quarantined. */
  maxMessageBytes: number;
  /** How long untracked mail is remembered (by keyed id hashes) for parents that arrive late. */
  pendingTtlMs: number;
}

export interface WorkerDeps {
  store: Store;
  accounts: Accounts;
  threads: Threads;
  ingestor: Ingestor;
  log: Logger;
  settings: WorkerSettings;
  /** Passwords and fresh OAuth2 access tokens. */
  logins: MailboxLogins;
  /** The per-user connection cap (sync.maxConnectionsPerUser). */
  gate: ConnectionGate;
  /** Mailboxes connecting and catching up at once (sync.startConcurrency), under one key. */
  startGate: ConnectionGate;
  /** Untracked mail that may now belong to a thread, possibly in another user's mailbox. */
  routePending: (locations: Location[]) => void;
  observe?: {
    fetched?: (n: number) => void;
    stored?: (n: number) => void;
    connected?: (up: boolean) => void;
    /** Seconds from a message's arrival in the mailbox (INTERNALDATE) to it being handled live. */
    lag?: (seconds: number) => void;
  };
}

type Mode = 'initial' | 'live' | 'reconsider';

/**
 * One TLS context for every mailbox of a daemon (the CA bundle and settings are the same for
 * all): a context made per connection cost each of thousands of connections its own copy
 * (measured: about 20 KB each, and CPU at every connect).
 */
const tlsContexts = new WeakMap<WorkerSettings, tls.SecureContext>();
function tlsContext(s: WorkerSettings): tls.SecureContext {
  let ctx = tlsContexts.get(s);
  if (!ctx) tlsContexts.set(s, (ctx = tls.createSecureContext(s.tlsCa ? { ca: s.tlsCa } : {})));
  return ctx;
}

/** How often a live mailbox's lastSyncAt is written to the store (it changes every check). */
const LAST_SYNC_WRITE_MS = 10 * 60_000;

/** Work handed to a worker that stopped before running it (code SYNC_STOPPED: try again later). */
export const syncStopped = () => Object.assign(new Error('the sync of this mailbox has stopped'), { code: 'SYNC_STOPPED' });

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

export class AccountWorker {
  readonly userId: string;
  readonly generation: number;
  readonly #deps: WorkerDeps;
  readonly #log: Logger;
  readonly #abort = new AbortController();
  readonly #backoff: Backoff;
  readonly #missing = new MissingUids();
  #client: ImapFlow | null = null;
  #running: Promise<void> | null = null;
  #wake: (() => void) | null = null;
  #dirty = false;
  #reconsider: Location[] = [];
  #lastStateWrite = 0;
  /** When the mailbox was last confirmed in sync; written to the store now and then only. */
  #lastSyncAt: string | null = null;
  /** Gives back this worker's place among the mailboxes starting at once (idempotent). */
  #startSlot: (() => void) | null = null;
  readonly #tasks: Array<{ run: (client: ImapFlow) => Promise<void>; cancel: (err: Error) => void }> = [];
  /** When each folder was last confirmed up to date with the server (epoch ms), for the status page. */
  readonly checkedAt = new Map<string, number>();

  constructor(userId: string, generation: number, deps: WorkerDeps) {
    this.userId = userId;
    this.generation = generation;
    this.#deps = deps;
    this.#log = deps.log;
    this.#backoff = new Backoff(deps.settings.backoff);
  }

  start(): void {
    this.#running ??= this.#run().catch((err) => this.#log.error({ err }, 'account worker stopped unexpectedly'));
  }

  /** Looks again at untracked mail at these locations (a relative of it was just stored). */
  reconsider(locations: Location[]): void {
    this.#reconsider.push(...locations);
    this.#poke();
  }

  #poke(): void {
    this.#dirty = true;
    this.#wake?.();
  }

  /**
   * Runs `task` on this mailbox's own connection between IDLEs, so imports and links never open
   * a second connection (sync.maxConnectionsPerUser). Rejects when the worker stops first.
   */
  withConnection<T>(task: (client: ImapFlow) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.#abort.signal.aborted) return reject(syncStopped());
      const run = async (client: ImapFlow) => {
        try {
          resolve(await task(client));
        } catch (err) {
          reject(err);
          // a task that broke the connection ends the session (reconnect); others do not
          if (!client.usable) throw err;
        }
      };
      this.#tasks.push({ run, cancel: reject });
      this.#poke();
    });
  }

  /** Stops syncing: logs out (bounded by `timeoutMs`), then drops the connection. */
  async stop(timeoutMs = 3_000): Promise<void> {
    this.#abort.abort();
    for (const t of this.#tasks.splice(0)) t.cancel(syncStopped());
    // LOGOUT first (it ends IDLE itself); waking the session loop before would let it close
    // the connection under the LOGOUT
    const client = this.#client;
    if (client) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([client.logout().catch(() => undefined), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
      client.close();
    }
    this.#wake?.();
    await this.#running;
  }

  /** When the mailbox was last confirmed in sync, fresher than the stored record. */
  get lastSyncAt(): string | null {
    return this.#lastSyncAt;
  }

  async #setState(state: MailboxState, error: { code: string; message: string } | null, lastSyncAt?: string): Promise<void> {
    if (this.#abort.signal.aborted) return;
    this.#lastStateWrite = Date.now();
    if (lastSyncAt) this.#lastSyncAt = lastSyncAt;
    await this.#deps.accounts.setState(this.userId, this.generation, state, error, lastSyncAt ? { lastSyncAt } : {});
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      const mbx = await this.#deps.accounts.getMailbox(this.userId);
      if (!mbx || mbx.generation !== this.generation) return;
      let upSince = 0;
      let minBackoff = 0;
      try {
        // a few dozen mailboxes connect and catch up at once; the place is given back once live
        this.#startSlot = await this.#deps.startGate.acquire('start', signal);
        const client = await connectImap({
          userId: this.userId, logins: this.#deps.logins, gate: this.#deps.gate, signal, log: this.#log,
          make: (auth) => this.#newClient(mbx, auth), onClient: (c) => (this.#client = c),
        });
        upSince = Date.now();
        this.#deps.observe?.connected?.(true);
        await this.#session(client, mbx);
      } catch (err) {
        if (signal.aborted) break;
        const c = classifyError(withProviderHints(err, this.#client));
        // A drop after the session was up is routine (server restarts, provider session
        // limits): reconnect quietly; the state changes only if reconnecting fails.
        const routine = upSince > 0 && c.state === 'unreachable';
        this.#log.warn({ err: { message: (err as Error).message, code: (err as { code?: string }).code }, state: c.state, code: c.code, routine }, routine ? 'connection dropped; reconnecting' : 'mailbox connection failed');
        if (!routine) await this.#setState(c.state, { code: c.code, message: c.message });
        minBackoff = c.minBackoffMs;
      } finally {
        this.#startSlot?.();
        this.#startSlot = null;
        if (upSince) this.#deps.observe?.connected?.(false);
        if (!signal.aborted) this.#client?.close(); // when stopping, stop() logs out and closes
        this.#client = null;
      }
      if (signal.aborted) break;
      const delay = this.#backoff.next(upSince ? Date.now() - upSince : 0, minBackoff);
      this.#log.debug({ delayMs: delay }, 'waiting before reconnecting');
      await sleep(delay, signal);
    }
  }

  #newClient(mbx: MailboxRecord, auth: LoginAuth): ImapFlow {
    const s = this.#deps.settings;
    const imapLog = imapLogger(this.#log.child({ lib: 'imapflow' }, { level: this.#log.isLevelEnabled('debug') ? 'debug' : 'fatal' }));
    const client = new ImapFlow({
      host: mbx.imap.host,
      port: mbx.imap.port,
      secure: mbx.imap.secure,
      // without implicit TLS: STARTTLS when offered; required unless plaintext is allowed
      doSTARTTLS: mbx.imap.secure ? undefined : s.allowPlaintext ? undefined : true,
      auth,
      // imapflow logs every failed connection at error level with a stack; the worker already
      // logs each failure once, classified, so imapflow's own lines show only when debugging
      logger: imapLog.logger as never,
      disableAutoIdle: true,
      clientInfo: { name: 'mailsync' },
      connectionTimeout: s.connectTimeoutMs,
      greetingTimeout: s.connectTimeoutMs,
      socketTimeout: s.socketTimeoutMs,
      tls: { secureContext: tlsContext(s) },
    });
    imapLog.attach(client);
    scopeProviderIds(client, this.userId);
    client.on('error', (err: Error) => this.#log.debug({ err: { message: err.message } }, 'imap connection error'));
    client.on('close', () => this.#poke());
    client.on('exists', () => this.#poke());
    return client;
  }

  async #session(client: ImapFlow, mbx: MailboxRecord): Promise<void> {
    // mail queued to be looked at again before a restart is looked at now
    this.#reconsider.push(...(await this.#deps.threads.reconsiderQueue(this.userId)));
    const folders = await resolveFolders(client);
    // the folder watched with IDLE: INBOX, or Gmail's All Mail
    const inbox = folders.find((f) => f.role === 'inbox' || f.role === 'all')!;
    const sent = folders.find((f) => f.role === 'sent');
    const states = await Promise.all(folders.map((f) => this.#deps.accounts.getFolder(this.userId, f.path)));
    if (states.some((s) => !s) || mbx.state !== 'live') {
      if (states.some((s) => !s)) await this.#setState('initial_sync', null);
    }
    await this.#syncFolders(client, folders, mbx, states.some((s) => !s) ? 'initial' : 'live');
    await this.#setState('live', null, new Date().toISOString());
    this.#log.info({ folders: folders.map((f) => f.path) }, 'mailbox live');
    this.#startSlot?.();
    this.#startSlot = null;

    await client.mailboxOpen(inbox.path, { readOnly: true });
    // the first Sent check at a random point of the period, so that mailboxes started together
    // do not all check (and write) in the same second of every period
    let lastSentPoll = Date.now() - Math.floor(Math.random() * this.#deps.settings.sentPollMs);
    while (!this.#abort.signal.aborted) {
      this.#dirty = false;
      if (this.#reconsider.length) await this.#handleReconsider(client, folders, inbox);
      if (this.#tasks.length) {
        while (this.#tasks.length && !this.#abort.signal.aborted) await this.#tasks.shift()!.run(client);
        await client.mailboxOpen(inbox.path, { readOnly: true });
      }
      await this.#catchUp(client, inbox, mbx);
      if (sent && Date.now() - lastSentPoll >= this.#deps.settings.sentPollMs) {
        lastSentPoll = Date.now();
        const checked = Date.now();
        const st = await this.#deps.accounts.getFolder(this.userId, sent.path);
        const status = await client.status(sent.path, { uidNext: true, uidValidity: true });
        if (!st || !status || String(status.uidValidity) !== st.uidValidity || (status.uidNext ?? 0) > st.uidNext) {
          await this.#syncFolders(client, [sent], mbx, 'live');
          await client.mailboxOpen(inbox.path, { readOnly: true });
          await this.#catchUp(client, inbox, mbx);
        }
        this.checkedAt.set(sent.path, checked);
      }
      // confirmed in sync: kept in memory (the API and status page read it from here) and
      // written to the store only every few minutes, for readers of a stopped daemon's store
      this.#lastSyncAt = new Date().toISOString();
      if (Date.now() - this.#lastStateWrite > LAST_SYNC_WRITE_MS) await this.#setState('live', null, this.#lastSyncAt);
      const untilSentPoll = sent ? Math.max(0, this.#deps.settings.sentPollMs - (Date.now() - lastSentPoll)) : Infinity;
      await this.#idle(client, Math.min(this.#deps.settings.idleRefreshMs, untilSentPoll));
      if (!client.usable) throw Object.assign(new Error('the IMAP connection closed'), { code: 'EConnectionClosed' });
    }
  }

  /**
   * IDLE until new mail, a wake-up, or `ms` passes. Returns as soon as EXISTS arrives: the
   * next command (our catch-up FETCH) ends IDLE, so there is no wait for a quiet moment.
   */
  async #idle(client: ImapFlow, ms: number): Promise<void> {
    if (this.#dirty || this.#abort.signal.aborted) return;
    let timer: NodeJS.Timeout | undefined;
    const woken = new Promise<'woken' | 'timer'>((resolve) => {
      this.#wake = () => resolve('woken');
      timer = setTimeout(() => resolve('timer'), ms);
    });
    const started = Date.now();
    const idling = client.idle().then(() => 'ended' as const, () => 'ended' as const);
    let first = await Promise.race([woken, idling]);
    if (first === 'ended' && Date.now() - started < 1_000 && client.usable && !this.#dirty) {
      // the server ended IDLE at once (or does not support it): wait for the timer instead of spinning
      first = await woken;
    }
    clearTimeout(timer);
    this.#wake = null;
    // nothing arrived for a whole refresh period: make sure someone is still listening
    if (first === 'timer' && !this.#abort.signal.aborted) await probeConnection(client, this.#deps.settings.probeTimeoutMs);
  }

  /** New mail in the open INBOX since the stored watermark. */
  async #catchUp(client: ImapFlow, folder: WatchedFolder, mbx: MailboxRecord): Promise<void> {
    const checked = Date.now();
    const st = await this.#deps.accounts.getFolder(this.userId, folder.path);
    const open = client.mailbox;
    if (!st || !open || String(open.uidValidity) !== st.uidValidity) {
      await this.#syncFolders(client, [folder], mbx, 'live');
      await client.mailboxOpen(folder.path, { readOnly: true });
      return;
    }
    const records = await fetchHeaderRecords(client, `${st.uidNext}:*`, st.uidNext, this.#deps.ingestor, (uid) => this.#locKey(folder.path, st.uidValidity, uid));
    if (records.length) {
      this.#deps.observe?.fetched?.(records.length);
      const tracked = await this.#deps.ingestor.decide(records);
      await this.#process(client, folder, st, records, tracked, 'live', null);
    }
    this.checkedAt.set(folder.path, checked);
  }

  /**
   * Catch-up of several folders with one tracking decision over all their headers, so a
   * reply in INBOX and its parent in Sent find each other whatever order they are read in.
   */
  async #syncFolders(client: ImapFlow, folders: WatchedFolder[], mbx: MailboxRecord, mode: Mode): Promise<void> {
    const plans: Array<{ folder: WatchedFolder; st: FolderState; records: HeaderRecord[]; uidNext: number }> = [];
    const checked = Date.now();
    for (const folder of folders) {
      const opened = await client.mailboxOpen(folder.path, { readOnly: true });
      const uidValidity = String(opened.uidValidity);
      const prev = await this.#deps.accounts.getFolder(this.userId, folder.path);
      let records: HeaderRecord[];
      const locKey = (uid: number) => this.#locKey(folder.path, uidValidity, uid);
      if (prev && prev.uidValidity === uidValidity) {
        records = opened.uidNext > prev.uidNext ? await this.#fetchHeadersChunked(client, `${prev.uidNext}:*`, prev.uidNext, locKey) : [];
      } else {
        if (prev) {
          // UIDVALIDITY changed: old UIDs mean nothing now. Rebuild silently; messages already
          // stored are recognised by their key and produce no new event (B34).
          this.#log.warn({ folder: folder.path, was: prev.uidValidity, now: uidValidity }, 'UIDVALIDITY changed; rebuilding the folder from Message-IDs');
          await this.#deps.accounts.dropFolderLocations(this.userId, folder.path);
        }
        const since = new Date(mbx.syncSince);
        const uids = opened.exists ? ((await client.search({ since }, { uid: true })) || []) : [];
        records = [];
        // header fields stream in: a window is bounded only by its command line
        for (const window of uidWindows(uids, this.#deps.settings.fetchBatchSize)) {
          await fetchHeaderRecords(client, window, 0, this.#deps.ingestor, locKey, records);
        }
      }
      const st: FolderState = prev && prev.uidValidity === uidValidity ? prev : {
        path: folder.path, role: folder.role, specialUse: folder.specialUse, uidValidity, uidNext: 1, highestModseq: null, syncedAt: new Date().toISOString(),
      };
      if (opened.highestModseq !== undefined) st.highestModseq = String(opened.highestModseq);
      plans.push({ folder, st, records, uidNext: Number(opened.uidNext) });
    }
    const all = plans.flatMap((p) => p.records);
    this.#deps.observe?.fetched?.(all.length);
    const trackedAll = await this.#deps.ingestor.decide(all);
    let offset = 0;
    for (const plan of plans) {
      const tracked = new Set<number>();
      plan.records.forEach((_, i) => {
        if (trackedAll.has(offset + i)) tracked.add(i);
      });
      offset += plan.records.length;
      if (tracked.size) await client.mailboxOpen(plan.folder.path, { readOnly: true });
      await this.#process(client, plan.folder, plan.st, plan.records, tracked, mode, plan.uidNext);
      this.checkedAt.set(plan.folder.path, checked);
    }
  }

  async #fetchHeadersChunked(client: ImapFlow, range: string, minUid: number, locKey: (uid: number) => string): Promise<HeaderRecord[]> {
    return fetchHeaderRecords(client, range, minUid, this.#deps.ingestor, locKey);
  }

  /**
   * Stores tracked messages of one folder (fetching sources only for those not stored yet)
   * and advances the watermark chunk by chunk, so a crash resumes close to where it stopped.
   */
  async #process(client: ImapFlow, folder: WatchedFolder, st: FolderState, records: HeaderRecord[], tracked: Set<number>, mode: Mode, examinedUidNext: number | null): Promise<void> {
    const { ingestor, settings, accounts } = this.#deps;
    const loc = (uid: number): Location => ({ userId: this.userId, folder: folder.path, uidValidity: st.uidValidity, uid });
    const { stored, missingUid } = await ingestor.processBatch(records, tracked, {
      context: (rec) => ({ userId: this.userId, folder: folder.path, location: loc(rec.uid) }),
      fetchSources: (recs) => fetchSourcesBySize(client, recs, settings),
      // the initial sync remembers recent untracked mail too: its parent may reach Sent later
      rememberUntracked: mode !== 'reconsider',
      pendingTtlMs: settings.pendingTtlMs,
      onChunk: async (lastUid, missing) => {
        if (mode === 'reconsider') return;
        // the watermark advances chunk by chunk (a crash resumes close to where it stopped),
        // never past a message that could not be fetched yet
        st.uidNext = Math.max(st.uidNext, missing ?? lastUid + 1);
        st.syncedAt = new Date().toISOString();
        await accounts.putFolder(this.userId, this.generation, st);
      },
    });
    const missKey = (uid: number) => `${folder.path}\n${st.uidValidity}\n${uid}`;
    for (const r of records) if (missingUid === null || r.uid < missingUid) this.#missing.clear(missKey(r.uid));
    if (missingUid !== null) {
      // announced but not fetchable yet (B44), or expunged meanwhile: look again shortly
      const rec = records.find((r) => r.uid === missingUid)!;
      const delay = this.#missing.next(missKey(missingUid));
      if (delay !== null) setTimeout(() => this.#poke(), delay).unref();
      else if (mode !== 'reconsider') {
        await ingestor.setAside(rec, { userId: this.userId, folder: folder.path, location: loc(missingUid) }, 'unfetchable', `the server listed UID ${missingUid} but returned no content after ${MISSING_RETRY_MS.length + 1} attempts`);
        st.uidNext = Math.max(st.uidNext, missingUid + 1);
        this.#poke(); // the rest of the folder
      }
    } else if (examinedUidNext !== null) {
      // UIDNEXT from EXAMINE (taken before the fetch) is safe to jump to: anything arriving
      // later gets a higher UID
      st.uidNext = Math.max(st.uidNext, examinedUidNext);
    }
    st.syncedAt = new Date().toISOString();
    if (mode !== 'reconsider') await accounts.putFolder(this.userId, this.generation, st);
    if (stored) this.#deps.observe?.stored?.(stored);
    if (mode === 'live' && this.#deps.observe?.lag) {
      // INTERNALDATE has whole seconds: the figure is good to about a second
      for (const i of tracked) {
        const at = records[i]?.internalDate?.getTime();
        if (at) this.#deps.observe.lag(Math.max(0, (Date.now() - at) / 1000));
      }
    }
    if (records.length) this.#log.debug({ folder: folder.path, seen: records.length, tracked: tracked.size, stored, uidNext: st.uidNext }, 'folder synced');
  }

  async #handleReconsider(client: ImapFlow, folders: WatchedFolder[], inbox: WatchedFolder): Promise<void> {
    const work = this.#reconsider.splice(0);
    const byFolder = new Map<string, Location[]>();
    for (const l of work) byFolder.set(l.folder, [...(byFolder.get(l.folder) ?? []), l]);
    for (const [path, locs] of byFolder) {
      const folder = folders.find((f) => f.path === path);
      const st = folder && (await this.#deps.accounts.getFolder(this.userId, path));
      if (!folder || !st) continue; // a folder no longer watched: nothing to look at
      const uids = locs.filter((l) => l.uidValidity === st.uidValidity).map((l) => l.uid);
      if (uids.length) {
        await client.mailboxOpen(path, { readOnly: true });
        const records = await fetchHeaderRecords(client, toRanges(uids), 0, this.#deps.ingestor, (uid) => this.#locKey(path, st.uidValidity, uid));
        const tracked = await this.#deps.ingestor.decide(records);
        await this.#process(client, folder, { ...st }, records, tracked, 'reconsider', null);
      }
    }
    // only now, after the re-read is stored: a crash before this reads them again
    await this.#deps.threads.finishReconsider(work);
    await client.mailboxOpen(inbox.path, { readOnly: true });
  }

  #locKey(folder: string, uidValidity: string, uid: number): string {
    return `${this.userId}\n${folder}\n${uidValidity}\n${uid}`;
  }
}
