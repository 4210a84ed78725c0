/**
 * The LevelDB key layout: the only place that spells keys. Keys are UTF-8 strings ordered
 * for range scans; `!` separates parts (ids chosen by the ATS cannot contain it: API.md limits
 * them to [A-Za-z0-9._:-]; folder names and Message-IDs are escaped). Every index is written in
 * the same batch as the record it indexes.
 *
 * | key                                         | value                                        |
 * |---------------------------------------------|----------------------------------------------|
 * | meta!version                                | layout version                               |
 * | meta!flush                                  | 0 — written with fsync (Store.flush)         |
 * | meta!purge                                  | set by an erasure until LevelDB's files are  |
 * |                                             | rewritten without what it deleted            |
 * | meta!keys                                   | check value of each key id of the keyring,   |
 * |                                             | to refuse a key file that is not this store's|
 * | user!{userId}                               | UserRecord                                   |
 * | uaddr!{normAddr}!{userId}                   | '' — user addresses (email and aliases)      |
 * | mbx!{userId}                                | MailboxRecord, credentials sealed            |
 * | fld!{userId}!{folder}                       | FolderState (uidValidity, uidNext, modseq)   |
 * | loc!{userId}!{folder}!{uidValidity}!{uid}   | messageKey — where a stored message sits     |
 * | cand!{candidateId}                          | CandidateRecord                              |
 * | addr!{normAddr}!{candidateId}               | '' — candidate addresses                     |
 * | msg!{messageKey}                            | StoredMessage (content: sealed when enabled) |
 * | raw!{messageKey}                            | original bytes (sealed when enabled)         |
 * | mid!{matchKey}                              | threadId — Message-IDs (own and referenced)  |
 * |                                             | and Thread-Index roots of tracked threads    |
 * | thr!{threadId}                              | ThreadRecord (sealed when enabled)           |
 * | thrmid!{threadId}!{matchKey}                | '' — reverse of mid!, for merges and erasure |
 * | thrmsg!{threadId}!{date}!{messageKey}       | '' — messages of a thread in date order      |
 * | athr!{normAddr}!{threadId}                  | '' — participant address → threads           |
 * | candthr!{candidateId}!{threadId}            | activity key in candact (for moving it)      |
 * | candact!{candidateId}!{~activity}!{thread}  | '' — candidate's threads, newest first       |
 * |                                             | (activity: newest message on that profile)   |
 * | tomb!{candidateId}!{messageKey}             | TombstoneRecord — removed from this profile; |
 * |                                             | never linked to this candidate again         |
 * | tombc!{candidateId}                         | '' — this candidate has tombstones (a point  |
 * |                                             | read keeps the common case free)             |
 * | pend!{idHash}!{userId}!{folder}!{uid}       | PendingRef — untracked mail that referenced  |
 * |                                             | an id, kept a few days for late parents      |
 * | rcn!{userId}!{folder}!{uidValidity}!{uid}   | '' — untracked mail to look at again: its    |
 * |                                             | parent was stored (written in that batch)    |
 * | imp!{importId}                              | ImportRecord: an import of older mail        |
 * | qtn!{userId}!{quarantineId}                 | QuarantineRecord: mail not taken in as it    |
 * |                                             | should be, with the reason                   |
 * | evt!{seq}                                   | EventRecord: the outbox and the change feed  |
 * | evq!{seq}                                   | '' — events still to deliver                 |
 * | rly!{queueId}                               | RelayEntry: a message the relay still sends  |
 * | rlyraw!{queueId}                            | its bytes as they will be sent               |
 * | aud!{seq}                                   | AuditEntry: a privacy action (consent,       |
 * |                                             | secrecy, removal, erasure, import) written   |
 * |                                             | in the batch of the change; ids only         |
 */

export const SEP = '!';
/** Upper bound for range scans over a prefix. */
export const HIGH = '\xff';

/** Folder names and Message-IDs may contain `!`: escape it (and `%`) so parts never run together. */
export function esc(part: string): string {
  return part.replace(/%/g, '%25').replace(/!/g, '%21');
}

export function unesc(part: string): string {
  return part.replace(/%21/g, '!').replace(/%25/g, '%');
}

/** A fixed-width decimal, so string order is numeric order. */
export function pad(n: number | bigint, width = 16): string {
  return n.toString().padStart(width, '0');
}

/** Descending order for "newest first" scans: 9999999999999 - epoch ms. */
export function invertTime(iso: string): string {
  const ms = Date.parse(iso);
  return pad(9_999_999_999_999 - (Number.isFinite(ms) ? ms : 0), 13);
}

export const K = {
  version: () => 'meta!version',
  flush: () => 'meta!flush',
  purgeOwed: () => 'meta!purge',
  keyChecks: () => 'meta!keys',
  user: (userId: string) => `user!${userId}`,
  userAddr: (normAddr: string, userId: string) => `uaddr!${esc(normAddr)}!${userId}`,
  userAddrPrefix: (normAddr: string) => `uaddr!${esc(normAddr)}!`,
  mailbox: (userId: string) => `mbx!${userId}`,
  revoked: (userId: string) => `rvk!${userId}`,
  folder: (userId: string, folder: string) => `fld!${userId}!${esc(folder)}`,
  folderPrefix: (userId: string) => `fld!${userId}!`,
  location: (userId: string, folder: string, uidValidity: string, uid: number) => `loc!${userId}!${esc(folder)}!${uidValidity}!${pad(uid, 10)}`,
  locationFolderPrefix: (userId: string, folder: string) => `loc!${userId}!${esc(folder)}!`,
  locationUserPrefix: (userId: string) => `loc!${userId}!`,
  candidate: (cid: string) => `cand!${cid}`,
  candAddr: (normAddr: string, cid: string) => `addr!${esc(normAddr)}!${cid}`,
  candAddrPrefix: (normAddr: string) => `addr!${esc(normAddr)}!`,
  message: (key: string) => `msg!${key}`,
  raw: (key: string) => `raw!${key}`,
  matchKey: (mk: string) => `mid!${esc(mk)}`,
  thread: (threadId: string) => `thr!${threadId}`,
  threadMatchKey: (threadId: string, mk: string) => `thrmid!${threadId}!${esc(mk)}`,
  threadMatchKeyPrefix: (threadId: string) => `thrmid!${threadId}!`,
  threadMessage: (threadId: string, dateIso: string, key: string) => `thrmsg!${threadId}!${dateIso}!${key}`,
  threadMessagePrefix: (threadId: string) => `thrmsg!${threadId}!`,
  addrThread: (normAddr: string, threadId: string) => `athr!${esc(normAddr)}!${threadId}`,
  addrThreadPrefix: (normAddr: string) => `athr!${esc(normAddr)}!`,
  candThread: (cid: string, threadId: string) => `candthr!${cid}!${threadId}`,
  candThreadPrefix: (cid: string) => `candthr!${cid}!`,
  candActivity: (cid: string, activity: string, threadId: string) => `candact!${cid}!${invertTime(activity)}!${threadId}`,
  candActivityPrefix: (cid: string) => `candact!${cid}!`,
  tomb: (cid: string, messageKey: string) => `tomb!${cid}!${messageKey}`,
  tombPrefix: (cid: string) => `tomb!${cid}!`,
  tombCandidate: (cid: string) => `tombc!${cid}`,
  pending: (idHash: string, userId: string, folder: string, uid: number) => `pend!${idHash}!${userId}!${esc(folder)}!${pad(uid, 10)}`,
  pendingPrefix: (idHash: string) => `pend!${idHash}!`,
  pendingAll: () => 'pend!',
  reconsider: (userId: string, folder: string, uidValidity: string, uid: number) => `rcn!${userId}!${esc(folder)}!${uidValidity}!${pad(uid, 10)}`,
  reconsiderUserPrefix: (userId: string) => `rcn!${userId}!`,
  importJob: (id: string) => `imp!${id}`,
  importJobPrefix: () => 'imp!',
  quarantine: (userId: string, id: string) => `qtn!${userId}!${id}`,
  quarantineUserPrefix: (userId: string) => `qtn!${userId}!`,
  quarantinePrefix: () => 'qtn!',
  event: (seq: number) => `evt!${pad(seq)}`,
  eventPrefix: () => 'evt!',
  eventQueue: (seq: number) => `evq!${pad(seq)}`,
  eventQueuePrefix: () => 'evq!',
  relay: (queueId: string) => `rly!${queueId}`,
  relayPrefix: () => 'rly!',
  relayRaw: (queueId: string) => `rlyraw!${queueId}`,
  audit: (seq: number) => `aud!${pad(seq)}`,
  auditPrefix: () => 'aud!',
};

/** Key prefixes whose values hold mail content: sealed when `store.encryptContent` is on. */
// aud! holds no content, but who acted on whose mailbox when is personal data too
export const CONTENT_PREFIXES = ['msg!', 'raw!', 'thr!', 'evt!', 'rly!', 'rlyraw!', 'aud!'];

/** Key prefixes whose JSON values carry sealed credentials (`sealedCredentials`), always sealed. */
export const CREDENTIAL_PREFIXES = ['mbx!'];

/** The last `!`-separated part of a key. */
export function lastPart(key: string): string {
  return key.slice(key.lastIndexOf(SEP) + 1);
}
