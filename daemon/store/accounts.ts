import { K, lastPart, unesc } from './keys.js';
import type { Store, WriteBatch } from './store.js';
import type { Outbox } from './outbox.js';
import type {
  CandidateRecord, FolderState, MailboxError, MailboxRecord, MailboxState, UserRecord,
} from './records.js';

/** Users, mailbox consents, folder sync state and candidates. */
export class Accounts {
  readonly #store: Store;
  readonly #outbox: Outbox;
  readonly #normalise: (address: string) => string;
  /**
   * User addresses (email and aliases) → user ids, read once from the store and kept in step by
   * putUser, its only writer. The relay asks this for every MAIL FROM and the ingest for every
   * message; a store scan per address cost a LevelDB iterator each time.
   */
  #userAddrs: Promise<Map<string, Set<string>>> | null = null;

  constructor(store: Store, outbox: Outbox, normalise: (address: string) => string) {
    this.#store = store;
    this.#outbox = outbox;
    this.#normalise = normalise;
  }

  // ---- users ----

  getUser(userId: string): Promise<UserRecord | undefined> {
    return this.#store.get<UserRecord>(K.user(userId));
  }

  async listUsers(): Promise<UserRecord[]> {
    return (await this.#store.entries<UserRecord>('user!')).map(([, u]) => u);
  }

  userAddresses(user: UserRecord): string[] {
    return [...new Set([user.email, ...user.aliases].map(this.#normalise))];
  }

  putUser(userId: string, body: { email: string; aliases: string[]; name: string | null }): Promise<UserRecord> {
    return this.#store.exclusive(async () => {
      const old = await this.getUser(userId);
      const now = new Date().toISOString();
      const user: UserRecord = { id: userId, email: body.email, aliases: body.aliases, name: body.name, createdAt: old?.createdAt ?? now, updatedAt: now };
      const batch = this.#store.batch().put(K.user(userId), user);
      const next = new Set(this.userAddresses(user));
      for (const a of old ? this.userAddresses(old) : []) if (!next.has(a)) batch.del(K.userAddr(a, userId));
      for (const a of next) batch.put(K.userAddr(a, userId), '');
      await batch.write();
      if (this.#userAddrs) {
        const index = await this.#userAddrs;
        for (const a of old ? this.userAddresses(old) : []) index.get(a)?.delete(userId);
        for (const a of next) {
          const ids = index.get(a) ?? new Set<string>();
          ids.add(userId);
          index.set(a, ids);
        }
      }
      return user;
    });
  }

  /** Users owning any of these normalised addresses. */
  async usersByAddresses(normAddrs: Iterable<string>): Promise<Set<string>> {
    const index = await (this.#userAddrs ??= this.#readUserAddresses());
    const out = new Set<string>();
    for (const a of normAddrs) for (const id of index.get(a) ?? []) out.add(id);
    return out;
  }

  async #readUserAddresses(): Promise<Map<string, Set<string>>> {
    const index = new Map<string, Set<string>>();
    for (const key of await this.#store.keys('uaddr!')) {
      const rest = key.slice('uaddr!'.length);
      const cut = rest.lastIndexOf('!');
      const a = unesc(rest.slice(0, cut));
      const userId = rest.slice(cut + 1);
      const ids = index.get(a) ?? new Set<string>();
      ids.add(userId);
      index.set(a, ids);
    }
    return index;
  }

  // ---- mailboxes ----

  getMailbox(userId: string): Promise<MailboxRecord | undefined> {
    return this.#store.get<MailboxRecord>(K.mailbox(userId));
  }

  async listMailboxes(): Promise<MailboxRecord[]> {
    return (await this.#store.entries<MailboxRecord>('mbx!')).map(([, m]) => m);
  }

  /**
   * Records a (new) consent: sync state of an older consent is dropped. `alsoWrite` adds to the
   * same batch (the audit record).
   */
  grantConsent(record: Omit<MailboxRecord, 'generation' | 'state' | 'lastError' | 'lastSyncAt'>, alsoWrite?: (batch: WriteBatch) => void): Promise<MailboxRecord> {
    return this.#store.exclusive(async () => {
      const old = await this.getMailbox(record.userId);
      const mailbox: MailboxRecord = { ...record, generation: (old?.generation ?? 0) + 1, state: 'connecting', lastError: null, lastSyncAt: null };
      const batch = this.#store.batch().put(K.mailbox(record.userId), mailbox).del(K.revoked(record.userId));
      if (old) await this.#dropSyncState(batch, record.userId);
      if (old && old.state !== 'connecting') {
        this.#stateEvent(batch, record.userId, 'connecting', old.state, null);
      }
      alsoWrite?.(batch);
      await batch.write();
      return mailbox;
    });
  }

  /**
   * Replaces the sealed credentials of the current consent (a refreshed OAuth2 token, a rotated
   * refresh token). Ignored when the consent changed meanwhile, so a refresh that raced a revoke
   * or a new consent never brings old credentials back.
   */
  updateCredentials(userId: string, generation: number, sealedCredentials: string): Promise<boolean> {
    return this.#store.exclusive(async () => {
      const mbx = await this.getMailbox(userId);
      if (!mbx || mbx.generation !== generation) return false;
      await this.#store.batch().put(K.mailbox(userId), { ...mbx, sealedCredentials }).write();
      return true;
    });
  }

  /**
   * Revocation: the record with its sealed credentials is deleted, with all sync state: folder
   * watermarks, message locations, the "look again" queue, quarantined mail and pending
   * references of this mailbox. What was deleted still sits in LevelDB's files until
   * `Store.compactPrefixes` rewrites them.
   */
  revokeConsent(userId: string, alsoWrite?: (batch: WriteBatch) => void): Promise<MailboxRecord | undefined> {
    return this.#store.exclusive(async () => {
      const old = await this.getMailbox(userId);
      if (!old) return undefined;
      const batch = this.#store.batch().del(K.mailbox(userId)).put(K.revoked(userId), { revokedAt: new Date().toISOString() });
      await this.#dropSyncState(batch, userId);
      this.#stateEvent(batch, userId, 'revoked', old.state, null);
      alsoWrite?.(batch);
      await batch.write();
      return old;
    });
  }

  /** When the user revoked consent (and has not granted it again). */
  async revokedAt(userId: string): Promise<string | null> {
    return (await this.#store.get<{ revokedAt: string }>(K.revoked(userId)))?.revokedAt ?? null;
  }

  async #dropSyncState(batch: WriteBatch, userId: string): Promise<void> {
    for (const key of await this.#store.keys(K.folderPrefix(userId))) batch.del(key);
    for (const key of await this.#store.keys(K.locationUserPrefix(userId))) batch.del(key);
    for (const key of await this.#store.keys(K.reconsiderUserPrefix(userId))) batch.del(key);
    for (const key of await this.#store.keys(K.quarantineUserPrefix(userId))) batch.del(key);
    // pending references are keyed by the referenced id's hash first: the user is the third part
    for (const key of await this.#store.keys(K.pendingAll())) if (key.split('!')[2] === userId) batch.del(key);
  }

  #stateEvent(batch: WriteBatch, userId: string, state: MailboxState, previousState: MailboxState, error: MailboxError | null): void {
    this.#outbox.append(batch, 'mailbox.state_changed', { userId, state, previousState, error }, `mbx:${userId}`);
  }

  /**
   * Moves a mailbox to a state. An event is emitted only when the state or the error code
   * changes, so a server that fails the same way every minute makes no noise. Ignored when
   * the consent it belongs to (`generation`) is no longer current.
   */
  setState(userId: string, generation: number, state: MailboxState, error: Omit<MailboxError, 'at'> | null, extra: { lastSyncAt?: string } = {}): Promise<boolean> {
    return this.#store.exclusive(async () => {
      const mbx = await this.getMailbox(userId);
      if (!mbx || mbx.generation !== generation) return false;
      const lastError = error ? { ...error, at: new Date().toISOString() } : state === 'live' ? null : mbx.lastError;
      const changed = mbx.state !== state || (mbx.lastError?.code ?? null) !== (lastError?.code ?? null);
      const next: MailboxRecord = { ...mbx, state, lastError, lastSyncAt: extra.lastSyncAt ?? mbx.lastSyncAt };
      const batch = this.#store.batch().put(K.mailbox(userId), next);
      if (changed) this.#stateEvent(batch, userId, state, mbx.state, lastError);
      await batch.write();
      return changed;
    });
  }

  // ---- folder sync state ----

  getFolder(userId: string, path: string): Promise<FolderState | undefined> {
    return this.#store.get<FolderState>(K.folder(userId, path));
  }

  async listFolders(userId: string): Promise<FolderState[]> {
    return (await this.#store.entries<FolderState>(K.folderPrefix(userId))).map(([, f]) => f);
  }

  /** Saves a folder's watermark, unless the consent changed meanwhile. */
  putFolder(userId: string, generation: number, state: FolderState): Promise<void> {
    return this.#store.exclusive(async () => {
      const mbx = await this.getMailbox(userId);
      if (!mbx || mbx.generation !== generation) return;
      await this.#store.batch().put(K.folder(userId, state.path), state).write();
    });
  }

  /** Forgets where messages of an old UIDVALIDITY sat; the messages themselves stay. */
  async dropFolderLocations(userId: string, path: string): Promise<void> {
    const batch = this.#store.batch();
    for (const key of await this.#store.keys(K.locationFolderPrefix(userId, path))) batch.del(key);
    await batch.write();
  }

  /** Message keys already stored from a folder, by UID (for the current UIDVALIDITY). */
  async folderLocations(userId: string, path: string, uidValidity: string): Promise<Map<number, string>> {
    const prefix = `${K.locationFolderPrefix(userId, path)}${uidValidity}!`;
    const out = new Map<number, string>();
    for (const [key, value] of await this.#store.entries<string>(prefix)) out.set(Number(lastPart(key)), value);
    return out;
  }

  // ---- candidates ----

  getCandidate(cid: string): Promise<CandidateRecord | undefined> {
    return this.#store.get<CandidateRecord>(K.candidate(cid));
  }

  candidateAddresses(c: CandidateRecord): string[] {
    return [...new Set(c.emails.map(this.#normalise))];
  }

  /** Candidates owning any of these normalised addresses. */
  async candidatesByAddresses(normAddrs: Iterable<string>): Promise<Set<string>> {
    const known = await (this.#candAddrs ??= this.#readCandidateAddresses());
    const out = new Set<string>();
    for (const a of new Set(normAddrs)) {
      const prefix = K.candAddrPrefix(a);
      // most addresses of most mail are no candidate's: only those that are cost a scan
      if (!known.has(prefix)) continue;
      for (const key of await this.#store.keys(prefix)) out.add(lastPart(key));
    }
    return out;
  }

  /**
   * Index prefixes of every candidate address, read once: every stored message asks for the
   * candidates of its addresses, and a store scan per address (an iterator each) was a large
   * share of storing one. Only ever grows while running: an address whose candidate changed
   * costs one scan that finds nothing.
   */
  #candAddrs: Promise<Set<string>> | null = null;

  async #readCandidateAddresses(): Promise<Set<string>> {
    const out = new Set<string>();
    for (const key of await this.#store.keys('addr!')) out.add(key.slice(0, key.lastIndexOf('!') + 1));
    return out;
  }

  /**
   * After an erasure: addresses that no candidate holds any more leave the in-memory index too.
   * Call inside `store.exclusive`, after the batch that deleted them is written.
   */
  async forgetCandidateAddresses(normAddrs: Iterable<string>): Promise<void> {
    if (!this.#candAddrs) return;
    const known = await this.#candAddrs;
    for (const a of normAddrs) {
      const prefix = K.candAddrPrefix(a);
      if ((await this.#store.keys(prefix, { limit: 1 })).length === 0) known.delete(prefix);
    }
  }

  /** Writes the candidate record and its address index into a batch; returns the addresses added. */
  async putCandidateInBatch(batch: WriteBatch, cid: string, body: { emails: string[]; name: string | null }): Promise<{ candidate: CandidateRecord; added: string[] }> {
    const old = await this.getCandidate(cid);
    const now = new Date().toISOString();
    const candidate: CandidateRecord = { id: cid, emails: body.emails, name: body.name, createdAt: old?.createdAt ?? now, updatedAt: now };
    batch.put(K.candidate(cid), candidate);
    const before = new Set(old ? this.candidateAddresses(old) : []);
    const next = this.candidateAddresses(candidate);
    for (const a of before) if (!next.includes(a)) batch.del(K.candAddr(a, cid));
    for (const a of next) batch.put(K.candAddr(a, cid), '');
    // known before the batch is written (a lookup meanwhile scans and finds what the store
    // holds), and after the index was read, which might not have seen them yet
    const known = await (this.#candAddrs ??= this.#readCandidateAddresses());
    for (const a of next) known.add(K.candAddrPrefix(a));
    return { candidate, added: next.filter((a) => !before.has(a)) };
  }

  folderName(key: string): string {
    return unesc(lastPart(key));
  }
}
