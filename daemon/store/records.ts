import type { Address } from '../threads/addresses.js';

/** Records as stored. API shapes are derived from them in `api/`. */

export type Role = 'user' | 'admin' | 'super_admin';

export interface UserRecord {
  id: string;
  email: string;
  aliases: string[];
  name: string | null;
  createdAt: string;
  updatedAt: string;
}

export type MailboxState =
  | 'connecting'
  | 'initial_sync'
  | 'live'
  | 'auth_failed'
  | 'imap_disabled'
  | 'unreachable'
  | 'throttled'
  | 'revoked';

export interface ServerSettings {
  host: string;
  port: number;
  secure: boolean;
}

export interface PasswordAuth {
  user: string;
  pass: string;
}

export interface OAuth2Auth {
  user: string;
  oauth2: { provider: 'google' | 'microsoft' | 'custom'; accessToken?: string; refreshToken?: string; expiresAt?: string };
}

export type MailAuth = PasswordAuth | OAuth2Auth;

/** What is sealed inside MailboxRecord.sealedCredentials. */
export interface MailboxCredentials {
  imap: MailAuth;
  smtp: MailAuth | null;
}

export interface MailboxError {
  code: string;
  message: string;
  at: string;
}

export interface MailboxRecord {
  userId: string;
  consent: { grantedAt: string };
  imap: ServerSettings;
  smtp: ServerSettings | null;
  /** base64 of the sealed MailboxCredentials. */
  sealedCredentials: string;
  syncSince: string;
  state: MailboxState;
  lastError: MailboxError | null;
  lastSyncAt: string | null;
  /** Increases with every consent, so a worker of an older consent knows it is stale. */
  generation: number;
}

/** `all`: Gmail's All Mail, watched instead of INBOX and Sent. */
export type FolderRole = 'inbox' | 'sent' | 'all';

export interface FolderState {
  path: string;
  role: FolderRole;
  specialUse: string | null;
  uidValidity: string;
  uidNext: number;
  highestModseq: string | null;
  syncedAt: string;
}

export interface CandidateRecord {
  id: string;
  emails: string[];
  name: string | null;
  createdAt: string;
  updatedAt: string;
}

export type ThreadOrigin = 'ats' | 'import' | 'linked';

export interface ThreadRecord {
  id: string;
  subject: string;
  origin: ThreadOrigin;
  candidateIds: string[];
  ownerUserIds: string[];
  secret: boolean;
  secretBy: string | null;
  /** Addresses as written, de-duplicated by their normalised form. */
  participants: string[];
  messageCount: number;
  lastMessageAt: string;
  snippet: string;
  createdAt: string;
}

export interface AttachmentMeta {
  id: string;
  filename: string | null;
  contentType: string;
  size: number;
  /** Position among mailparser's attachments of the original, to find the bytes again. */
  index: number;
}

export interface SeenIn {
  userId: string;
  folder: string;
}

export interface StoredMessage {
  key: string;
  threadId: string;
  messageId: string | null;
  messageIdAlternatives: string[];
  aliases: string[];
  inReplyTo: string | null;
  references: string[];
  date: string;
  direction: 'outbound' | 'inbound';
  from: Address | null;
  to: Address[];
  cc: Address[];
  subject: string;
  text: string;
  html: string | null;
  snippet: string;
  attachments: AttachmentMeta[];
  seenIn: SeenIn[];
  autoReply: boolean;
  /** Whether the original bytes are kept (they are not above store.maxRawBytes). */
  rawStored: boolean;
  size: number;
  /** Set when mailparser failed or timed out: the message is kept with what could be read. */
  parseError: string | null;
  createdAt: string;
}

export type EventType =
  | 'message.created'
  | 'thread.linked'
  | 'mailbox.state_changed'
  | 'import.finished'
  | 'message.sent'
  | 'message.failed'
  | 'candidate.erased';

/** `not_pushed`: no webhook URL was configured when it was recorded; the change feed has it. */
export type EventStatus = 'pending' | 'delivered' | 'failed' | 'not_pushed';

export interface EventRecord {
  id: string;
  seq: number;
  type: EventType;
  createdAt: string;
  data: Record<string, unknown>;
  /** Events with the same key are delivered in order, one at a time (a thread, a mailbox). */
  orderKey: string;
  status: EventStatus;
  attempts: number;
  nextAttemptAt: string | null;
  lastError: string | null;
  deliveredAt: string | null;
}

/** Untracked mail that referenced an id: if that id joins a tracked thread, look again. */
export interface PendingRef {
  uidValidity: string;
  /** Epoch ms after which the entry is swept. */
  expiresAt: number;
}

/** A recipient a mail server refused for good, with its reply. */
export interface RelayRejection {
  recipient: string;
  error: string;
}

/** A message accepted by the relay and not yet sent (or given up on). */
export interface RelayEntry {
  queueId: string;
  userId: string;
  threadId: string;
  /** The Message-ID as sent, with angle brackets. */
  messageId: string;
  /** Envelope sender (the user's address) and the recipients still to send to. */
  from: string;
  to: string[];
  accepted: string[];
  rejected: RelayRejection[];
  attempts: number;
  nextAttemptAt: string | null;
  lastError: string | null;
  /**
   * Set while a mail server has the message and has not answered. Found set after a crash, it
   * means the message may have gone out already: it is sent again (with the same Message-ID,
   * which receiving systems de-duplicate on) rather than lost.
   */
  sendingSince: string | null;
  size: number;
  createdAt: string;
}

/** An import of older conversations with a candidate from one user's mailbox. */
/** One thread an import found messages of: a message key to find it after a merge, and its share of the counts. */
export interface ImportThread {
  threadId: string;
  messageKey: string;
  matched: number;
  imported: number;
  linked: boolean;
}

export interface ImportRecord {
  id: string;
  candidateId: string;
  userId: string;
  state: 'queued' | 'running' | 'done' | 'failed';
  /** Messages whose header fields were examined, of `total` found by the searches. */
  scanned: number;
  total: number;
  /** Messages from, to or cc the candidate. */
  matched: number;
  /** Threads newly linked to the candidate by this import. */
  threadsLinked: number;
  /** Messages stored that were not stored before. */
  imported: number;
  /**
   * What the counts above are made of, per thread, once the import is done: so each reader is
   * told only of the threads they may see (a thread secret to them is left out of the counts).
   * Absent on records written before it existed.
   */
  threads?: ImportThread[];
  error: string | null;
  since: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}
