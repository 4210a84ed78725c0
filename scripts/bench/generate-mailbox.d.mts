// Types of generate-mailbox.mjs, for tests written in TypeScript.

export interface Person {
  address: string;
  name: string | null;
}

export interface GeneratedMessage {
  folder: 'INBOX' | 'Sent';
  date: Date;
  flags: string[];
  /** RFC 5322 bytes with CRLF line endings. */
  raw: Buffer;
  messageId: string;
  /** Part of a thread that started in the ATS. */
  ats: boolean;
  threadNo: number;
}

export interface AtsThread {
  threadNo: number;
  subject: string;
  candidate: Person;
  /** Message-IDs of the thread in order; the first is in the ATS domain. */
  messageIds: string[];
  /** base64 of the 22-byte Outlook Thread-Index root of the conversation. */
  rootIndex: string;
}

export interface MailboxSummary {
  candidates: Person[];
  atsThreads: AtsThread[];
  counts: { INBOX: number; Sent: number; ats: number; attachments: number; bytes: number };
  written?: number;
}

export interface GenerateOptions {
  seed?: number;
  count?: number;
  /** Share of messages that belong to ATS threads (0..1). */
  atsShare?: number;
  atsDomain?: string;
  days?: number;
  end?: Date;
  owner?: Person;
  attachmentShare?: number;
  maxAttachmentBytes?: number;
}

export interface Random {
  next(): number;
  int(n: number): number;
  range(lo: number, hi: number): number;
  pick<T>(items: T[]): T;
  chance(p: number): boolean;
  hex(n: number): string;
  bytes(n: number): Buffer;
  skewed(median: number, max: number): number;
}

export function createRandom(seed: number): Random;
export function generateMailbox(opts?: GenerateOptions): { messages: Iterable<GeneratedMessage>; summary: MailboxSummary };
export function atsReply(
  atsThread: AtsThread,
  opts?: { owner?: Person; seed?: number; n?: number; date?: Date; client?: 'gmail' | 'outlook' | 'apple' | 'thunderbird' },
): { raw: Buffer; messageId: string };
export function writeMaildir(home: string, messages: Iterable<GeneratedMessage>, owner?: { uid?: number; gid?: number }): number;
export function dovecotEnv(dovecotDir: string): { host: string; port: number; tlsPort: number; dir: string; caFile: string; usersFile: string; log: string };
export function dovecotHome(dovecotDir: string, user: string): string;
export function addDovecotUsers(dovecotDir: string, users: Array<{ user: string; pass: string }>): Promise<void>;
export function loadMailbox(dovecotDir: string, opts: GenerateOptions & { user: string; pass?: string }): Promise<MailboxSummary>;
