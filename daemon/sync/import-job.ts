import crypto from 'node:crypto';
import type { ImapFlow } from 'imapflow';
import type { Logger } from 'pino';
import { K } from '../store/keys.js';
import type { Store, WriteBatch } from '../store/store.js';
import type { Outbox } from '../store/outbox.js';
import type { Accounts } from '../store/accounts.js';
import type { Threads } from '../store/threads.js';
import type { ImportRecord, ImportThread, ThreadOrigin, ThreadRecord } from '../store/records.js';
import { fetchSources, chunk } from './imap-folders.js';
import { firstHeader } from '../threads/headers.js';
import { findConversations, importFolders, type Found } from './import-search.js';
import { headerFields, type Ingestor } from './ingestor.js';

/**
 * Imports of older conversations ("sync emails" on a candidate's profile) and links of one
 * conversation by Message-ID ("add from my mailbox"). The IMAP work runs on the mailbox's own
 * sync connection, between IDLEs, so no second connection is opened. Jobs of one user run one
 * after the other; their progress is stored as it moves, and a job interrupted by a restart
 * runs again (it imports nothing twice: stored messages only gain the candidate's link).
 */

export interface ImportDeps {
  store: Store;
  outbox: Outbox;
  accounts: Accounts;
  threads: Threads;
  ingestor: Ingestor;
  /** Runs IMAP work on the user's sync connection. */
  withConnection: <T>(userId: string, task: (client: ImapFlow) => Promise<T>) => Promise<T>;
  normalise: (address: string) => string;
  log: Logger;
  batchSize: number;
  maxRawBytes: number;
}

/** States in which the mailbox has no working connection to run an import on. */
const BROKEN = new Set(['auth_failed', 'imap_disabled', 'revoked']);

export function toImportView(r: ImportRecord): Record<string, unknown> {
  return {
    id: r.id, candidateId: r.candidateId, userId: r.userId, state: r.state, scanned: r.scanned, total: r.total,
    matched: r.matched, threadsLinked: r.threadsLinked, imported: r.imported, error: r.error, since: r.since,
    createdAt: r.createdAt, startedAt: r.startedAt, finishedAt: r.finishedAt,
  };
}

export class ImportRunner {
  readonly #d: ImportDeps;
  /** Per user: the chain of its jobs, so they run one at a time. */
  readonly #chains = new Map<string, Promise<void>>();
  #stopped = false;
  /** Candidates being erased: their imports and links stop at the next step and write nothing more. */
  readonly #held = new Map<string, number>();
  /** Imports and links running, per candidate. */
  readonly #active = new Map<string, Set<Promise<unknown>>>();

  constructor(deps: ImportDeps) {
    this.#d = deps;
  }

  /** Picks up jobs a stop interrupted. */
  async start(): Promise<void> {
    this.#stopped = false;
    for (const [, job] of await this.#d.store.entries<ImportRecord>(K.importJobPrefix())) {
      if (job.state === 'queued' || job.state === 'running') this.#enqueue(job.id, job.userId);
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.allSettled([...this.#chains.values()]);
  }

  /**
   * A candidate is being erased: their imports and links stop (and write nothing more) and this
   * resolves once none runs; until the returned function is called none starts.
   */
  async holdCandidate(candidateId: string): Promise<() => void> {
    this.#held.set(candidateId, (this.#held.get(candidateId) ?? 0) + 1);
    await Promise.allSettled([...(this.#active.get(candidateId) ?? [])]);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = this.#held.get(candidateId)! - 1;
      if (n > 0) this.#held.set(candidateId, n);
      else this.#held.delete(candidateId);
    };
  }

  #assertNotHeld(candidateId: string): void {
    if (this.#held.has(candidateId)) throw Object.assign(new Error(`candidate ${candidateId} is being erased`), { code: 'CANDIDATE_ERASED' });
  }

  async #activity<T>(candidateId: string, fn: () => Promise<T>): Promise<T> {
    this.#assertNotHeld(candidateId);
    const p = fn();
    const set = this.#active.get(candidateId) ?? new Set<Promise<unknown>>();
    this.#active.set(candidateId, set.add(p));
    try {
      return await p;
    } finally {
      set.delete(p);
      if (set.size === 0 && this.#active.get(candidateId) === set) this.#active.delete(candidateId);
    }
  }

  get(id: string): Promise<ImportRecord | undefined> {
    return this.#d.store.get<ImportRecord>(K.importJob(id));
  }

  /** `alsoWrite` adds to the batch that records the job (the audit record). */
  async create(userId: string, candidateId: string, since: string | null, alsoWrite?: (batch: WriteBatch, job: ImportRecord) => void): Promise<ImportRecord> {
    const job: ImportRecord = {
      id: `imp_${Date.now().toString(36)}${crypto.randomBytes(5).toString('hex')}`, candidateId, userId, state: 'queued',
      scanned: 0, total: 0, matched: 0, threadsLinked: 0, imported: 0, error: null, since, createdAt: new Date().toISOString(), startedAt: null, finishedAt: null,
    };
    await this.#d.store.exclusive(async () => {
      const batch = this.#d.store.batch().put(K.importJob(job.id), job);
      alsoWrite?.(batch, job);
      await batch.write();
    });
    this.#enqueue(job.id, userId);
    return job;
  }

  /** Resolves when the job has finished (tests, the CLI's wait). */
  async settled(userId: string): Promise<void> {
    await this.#chains.get(userId);
  }

  #enqueue(id: string, userId: string): void {
    const prev = this.#chains.get(userId) ?? Promise.resolve();
    const next = prev.then(() => (this.#stopped ? undefined : this.#run(id)));
    this.#chains.set(userId, next);
    void next.finally(() => {
      if (this.#chains.get(userId) === next) this.#chains.delete(userId);
    });
  }

  async #save(job: ImportRecord, finished = false): Promise<void> {
    await this.#d.store.exclusive(async () => {
      // a job failed by a revocation is not brought back by the run still winding down
      if (job.state !== 'failed' && (await this.get(job.id))?.state === 'failed') return;
      const batch = this.#d.store.batch().put(K.importJob(job.id), job);
      if (finished) this.#d.outbox.append(batch, 'import.finished', toImportView(job), `imp:${job.userId}`);
      await batch.write();
    });
  }

  /**
   * The user revoked their consent: their queued and running imports fail now with `reason`
   * (an `import.finished` event each) and never run again. Returns how many.
   */
  async failUser(userId: string, reason: string): Promise<number> {
    let n = 0;
    for (const [, job] of await this.#d.store.entries<ImportRecord>(K.importJobPrefix())) {
      if (job.userId !== userId || (job.state !== 'queued' && job.state !== 'running')) continue;
      Object.assign(job, { state: 'failed', error: reason, finishedAt: new Date().toISOString() });
      await this.#save(job, true);
      n++;
    }
    return n;
  }

  async #run(id: string): Promise<void> {
    const job = await this.get(id);
    // a job failed meanwhile (its user revoked consent) stays as it is
    if (!job || (job.state !== 'queued' && job.state !== 'running')) return;
    // a candidate being erased: the job goes with them
    if (this.#held.has(job.candidateId)) return;
    await this.#activity(job.candidateId, () => this.#runJob(id, job));
  }

  async #runJob(id: string, job: ImportRecord): Promise<void> {
    const log = this.#d.log.child({ importId: id, userId: job.userId, candidateId: job.candidateId });
    Object.assign(job, { state: 'running', startedAt: new Date().toISOString(), scanned: 0, total: 0, matched: 0, threadsLinked: 0, imported: 0, threads: undefined });
    await this.#save(job);
    try {
      const candidate = await this.#d.accounts.getCandidate(job.candidateId);
      if (!candidate || candidate.emails.length === 0) throw new Error(`candidate ${job.candidateId} has no email addresses to search for`);
      // as written and in matching form (Gmail's jane.doe+x@ also as janedoe@): SEARCH compares text
      const addresses = [...new Set(candidate.emails.flatMap((e) => [e.toLowerCase(), this.#d.normalise(e)]))];
      const found = await this.#search(job.userId, { addresses, since: job.since ? new Date(job.since) : null }, async (p) => {
        this.#assertNotHeld(job.candidateId);
        Object.assign(job, p);
        await this.#save(job);
      });
      const { linked, imported, threadOf, importedKeys } = await this.#store(job.userId, job.candidateId, found, 'import');
      Object.assign(job, { state: 'done', threadsLinked: linked.size, imported, threads: breakdown(found, threadOf, importedKeys, linked), finishedAt: new Date().toISOString() });
      log.info({ matched: job.matched, threads: linked.size, imported }, 'import finished');
    } catch (err) {
      // stopping: the job stays queued and runs again on the next start
      if (this.#stopped || (err as { code?: string }).code === 'SYNC_STOPPED') return;
      // its candidate is being erased: the erasure deletes the job's record
      if ((err as { code?: string }).code === 'CANDIDATE_ERASED') return;
      // failed by a revocation while it ran: that outcome stands
      if ((await this.get(id))?.state === 'failed') return;
      Object.assign(job, { state: 'failed', error: (err as Error).message, finishedAt: new Date().toISOString() });
      log.warn({ err: { message: (err as Error).message } }, 'import failed');
    }
    await this.#save(job, true);
  }

  /**
   * Links the conversation holding `messageId` in the user's mailbox to a candidate. Returns
   * the thread, or null when no such message is in the mailbox.
   */
  link(userId: string, candidateId: string, messageId: string): Promise<ThreadRecord | null> {
    return this.#activity(candidateId, async () => {
      const found = await this.#search(userId, { messageId }, () => undefined);
      const seed = found.find((f) => f.matched);
      if (!seed) return null;
      const { threadOf } = await this.#store(userId, candidateId, found, 'linked');
      const threadId = threadOf.get(seed.rec.key);
      return threadId ? ((await this.#d.threads.getThread(threadId)) ?? null) : null;
    });
  }

  async #search(userId: string, seed: Parameters<typeof findConversations>[2], onProgress: (p: { total: number; scanned: number; matched: number }) => Promise<void> | void): Promise<Found[]> {
    const mbx = await this.#d.accounts.getMailbox(userId);
    if (!mbx) throw new Error(`user ${userId} has not granted access to a mailbox`);
    if (BROKEN.has(mbx.state)) throw new Error(`the mailbox cannot be searched now (state ${mbx.state}${mbx.lastError ? `: ${mbx.lastError.message}` : ''})`);
    return this.#d.withConnection(userId, async (client) => findConversations(client, await importFolders(client), seed, {
      ingestor: this.#d.ingestor, normalise: this.#d.normalise, batchSize: this.#d.batchSize, onProgress,
      locationKey: (folder, uidValidity, uid) => `${userId}\n${folder}\n${uidValidity}\n${uid}`,
    }));
  }

  /**
   * Stores what was found (sources fetched only for messages not stored yet) and links each
   * thread to the candidate, asking the threads store whether each message may be linked.
   */
  async #store(userId: string, candidateId: string, found: Found[], origin: ThreadOrigin): Promise<{ linked: Set<string>; imported: number; importedKeys: string[]; threadOf: Map<string, string> }> {
    const { threads, ingestor } = this.#d;
    const linked = new Set<string>();
    const threadOf = new Map<string, string>();
    const importedKeys: string[] = [];
    let imported = 0;
    const link = async (threadId: string, key: string) => {
      this.#assertNotHeld(candidateId);
      threadOf.set(key, threadId);
      if (await threads.mayLink(candidateId, key) && (await threads.linkThread(threadId, candidateId))) linked.add(threadId);
    };
    const byFolder = new Map<string, Found[]>();
    for (const f of found) byFolder.set(f.folder, [...(byFolder.get(f.folder) ?? []), f]);
    const fetched: Array<{ f: Found; source: Buffer; complete: boolean }> = [];
    for (const [folder, items] of byFolder) {
      const missing: Found[] = [];
      for (const f of items) {
        const location = { userId, folder, uidValidity: f.uidValidity, uid: f.rec.uid };
        this.#assertNotHeld(candidateId);
        if (await threads.addSighting(f.rec.key, location)) {
          const msg = await threads.getMessage(f.rec.key);
          if (msg) await link(msg.threadId, f.rec.key);
        } else missing.push(f);
      }
      for (const part of chunk(missing, 25)) {
        const sources = await this.#d.withConnection(userId, async (client) => {
          const box = await client.mailboxOpen(folder, { readOnly: true });
          // the folder was renumbered meanwhile (UIDVALIDITY): these UIDs mean nothing now
          if (String(box.uidValidity) !== part[0]!.uidValidity) return new Map<number, { source: Buffer; complete: boolean }>();
          return fetchSources(client, part.map((f) => f.rec), this.#d.maxRawBytes);
        });
        for (const f of part) {
          const got = sources.get(f.rec.uid);
          if (got) fetched.push({ f, ...got });
        }
      }
    }
    // oldest first, whatever folder: a thread takes its subject from its first message
    const when = new Map(fetched.map(({ f }) => [f, Date.parse(firstHeader(headerFields(f.rec), 'date') ?? '') || f.rec.internalDate?.getTime() || 0]));
    fetched.sort((a, b) => when.get(a.f)! - when.get(b.f)!);
    for (const { f, source, complete } of fetched) {
      this.#assertNotHeld(candidateId);
      const allowed = await threads.mayLink(candidateId, f.rec.key);
      const result = await ingestor.ingest(f.rec, source, complete, {
        userId, folder: f.folder, location: { userId, folder: f.folder, uidValidity: f.uidValidity, uid: f.rec.uid }, origin, force: true, candidateIds: allowed ? [candidateId] : [],
      });
      if (result.status === 'stored') {
        imported++;
        importedKeys.push(f.rec.key);
      }
      if (result.status !== 'untracked') {
        const wasLinked = allowed && (await threads.getThread(result.threadId))?.candidateIds.includes(candidateId);
        threadOf.set(f.rec.key, result.threadId);
        if (wasLinked && result.status === 'stored') linked.add(result.threadId);
        else await link(result.threadId, f.rec.key);
      }
    }
    // threads merged while storing: count the survivors only
    for (const id of [...linked]) if (!(await threads.getThread(id))) linked.delete(id);
    for (const [key, id] of threadOf) if (!(await threads.getThread(id))) threadOf.set(key, (await threads.getMessage(key))?.threadId ?? id);
    return { linked, imported, importedKeys, threadOf };
  }
}

/** The counts of a finished import per thread (threads as they are after merges while storing). */
function breakdown(found: Found[], threadOf: Map<string, string>, importedKeys: string[], linked: Set<string>): ImportThread[] {
  const byThread = new Map<string, ImportThread>();
  const entry = (threadId: string, messageKey: string): ImportThread => {
    let e = byThread.get(threadId);
    if (!e) byThread.set(threadId, (e = { threadId, messageKey, matched: 0, imported: 0, linked: linked.has(threadId) }));
    return e;
  };
  for (const [key, threadId] of threadOf) entry(threadId, key);
  for (const f of found) {
    const threadId = threadOf.get(f.rec.key);
    if (f.matched && threadId) entry(threadId, f.rec.key).matched++;
  }
  for (const key of importedKeys) {
    const threadId = threadOf.get(key);
    if (threadId) entry(threadId, key).imported++;
  }
  return [...byThread.values()];
}
