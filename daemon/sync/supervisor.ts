import type { ImapFlow } from 'imapflow';
import type { Logger } from 'pino';
import type { Location } from '../store/threads.js';
import { AccountWorker, syncStopped, type WorkerDeps } from './account-worker.js';

/**
 * Starts one AccountWorker per consenting user, replaces it when the consent changes, stops
 * it on revocation, and routes "look again" requests to the worker of the right mailbox.
 */
export class SyncSupervisor {
  readonly #deps: Omit<WorkerDeps, 'log' | 'routePending'>;
  readonly #log: Logger;
  readonly #workers = new Map<string, AccountWorker>();
  #stopped = false;
  #sweepTimer: NodeJS.Timeout | null = null;

  constructor(deps: Omit<WorkerDeps, 'log' | 'routePending'>, log: Logger) {
    this.#deps = deps;
    this.#log = log;
  }

  async start(): Promise<void> {
    this.#stopped = false;
    for (const mbx of await this.#deps.accounts.listMailboxes()) this.#startWorker(mbx.userId, mbx.generation);
    // pending references are kept a few days; sweep the expired ones hourly
    this.#sweepTimer = setInterval(() => {
      this.#deps.threads.sweepPending().catch((err) => this.#log.warn({ err }, 'sweeping pending references failed'));
    }, 3_600_000);
    this.#sweepTimer.unref();
  }

  get size(): number {
    return this.#workers.size;
  }

  has(userId: string): boolean {
    return this.#workers.has(userId);
  }

  /** When each folder of a running worker was last confirmed up to date (epoch ms); undefined when none runs. */
  folderChecks(userId: string): ReadonlyMap<string, number> | undefined {
    return this.#workers.get(userId)?.checkedAt;
  }

  /** When a running worker last confirmed the mailbox in sync (fresher than the stored record). */
  lastSyncAt(userId: string): string | null {
    return this.#workers.get(userId)?.lastSyncAt ?? null;
  }

  /** The oldest folder check over all running workers (epoch ms), or null when none has checked yet. */
  oldestFolderCheck(): number | null {
    let oldest: number | null = null;
    for (const w of this.#workers.values()) for (const at of w.checkedAt.values()) if (oldest === null || at < oldest) oldest = at;
    return oldest;
  }

  /** (Re)starts the worker of a user after a consent. */
  async restart(userId: string): Promise<void> {
    await this.stopUser(userId);
    this.#deps.logins.forget(userId);
    const mbx = await this.#deps.accounts.getMailbox(userId);
    if (mbx && !this.#stopped) this.#startWorker(userId, mbx.generation);
  }

  async stopUser(userId: string): Promise<void> {
    const w = this.#workers.get(userId);
    if (!w) return;
    this.#workers.delete(userId);
    await w.stop();
  }

  #startWorker(userId: string, generation: number): void {
    const log = this.#log.child({ component: 'sync', userId, generation });
    const worker = new AccountWorker(userId, generation, { ...this.#deps, log, routePending: (locs) => this.routePending(locs) });
    this.#workers.set(userId, worker);
    worker.start();
  }

  /** Runs `task` on the user's sync connection (imports, links); fails when the user has none. */
  withConnection<T>(userId: string, task: (client: ImapFlow) => Promise<T>): Promise<T> {
    const w = this.#workers.get(userId);
    if (this.#stopped) return Promise.reject(syncStopped());
    if (!w) return Promise.reject(new Error(`no mailbox of user ${userId} is being synced`));
    return w.withConnection(task);
  }

  /** Called after a message was stored: untracked mail that pointed at it is looked at again. */
  onStored(reconsider: Location[]): void {
    this.routePending(reconsider);
  }

  routePending(locations: Location[]): void {
    const byUser = new Map<string, Location[]>();
    for (const l of locations) byUser.set(l.userId, [...(byUser.get(l.userId) ?? []), l]);
    for (const [userId, locs] of byUser) this.#workers.get(userId)?.reconsider(locs);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#sweepTimer) clearInterval(this.#sweepTimer);
    const workers = [...this.#workers.values()];
    this.#workers.clear();
    await Promise.allSettled(workers.map((w) => w.stop()));
  }
}
