import type { ImapFlow } from 'imapflow';
import { ID_HEADER_NAMES } from '../threads/message-ids.js';
import type { FolderRole } from '../store/records.js';
import type { HeaderRecord, Ingestor, SourceResult } from './ingestor.js';
import { gmailAllFolder, providerIds } from './gmail.js';

/** IMAP helpers of the account worker: which folders to watch, and bounded fetches. */

export interface WatchedFolder {
  path: string;
  role: FolderRole;
  specialUse: string | null;
}

/** Names used for the sent folder by servers that do not advertise \Sent (RFC 6154). */
const SENT_NAMES = /^(sent|sent items|sent messages|sent mail|gesendet|gesendete elemente|envoy[ée]s|[ée]l[ée]ments envoy[ée]s|enviados|inviata|posta inviata|verzonden items)$/i;

/** INBOX and the \Sent folder (by special-use, else by a well-known name); on Gmail, All Mail alone. */
export async function resolveFolders(client: ImapFlow): Promise<WatchedFolder[]> {
  const list = await client.list();
  const all = gmailAllFolder(client, list);
  if (all) return [{ path: all.path, role: 'all', specialUse: '\\All' }];
  const out: WatchedFolder[] = [{ path: 'INBOX', role: 'inbox', specialUse: '\\Inbox' }];
  const leaf = (p: string, delimiter: string | undefined) => (delimiter ? p.split(delimiter).pop() ?? p : p);
  const sent = list.find((m) => m.specialUse === '\\Sent') ?? list.find((m) => SENT_NAMES.test(leaf(m.path, m.delimiter)) && !m.flags?.has('\\Noselect'));
  if (sent) out.push({ path: sent.path, role: 'sent', specialUse: sent.specialUse ?? null });
  return out;
}

/** `1,2,3,7,9,10` → `1:3,7,9:10`: short command lines on big folders (B43). */
export function toRanges(uids: number[]): string {
  const sorted = [...new Set(uids)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; i++) {
    const start = sorted[i]!;
    let end = start;
    while (i + 1 < sorted.length && sorted[i + 1] === end + 1) end = sorted[++i]!;
    parts.push(start === end ? String(start) : `${start}:${end}`);
  }
  return parts.join(',');
}

export function chunk<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * Header fields of the given UIDs (a UID set string, `n:*` allowed), turned into records as
 * they stream in: one FETCH however many messages it names, none of them held as a response.
 * Only UIDs ≥ `minUid` are kept: `n:*` returns the last message even when n is past the end
 * (RFC 3501 §6.4.8).
 */
export async function fetchHeaderRecords(
  client: ImapFlow, range: string, minUid: number, ingestor: Ingestor, locationKey: (uid: number) => string, out: HeaderRecord[] = [],
): Promise<HeaderRecord[]> {
  const from = out.length;
  // threadId: X-GM-THRID on Gmail (THREADID with OBJECTID); imapflow asks for X-GM-MSGID itself
  for await (const m of client.fetch(range, { uid: true, size: true, internalDate: true, headers: ID_HEADER_NAMES, threadId: true }, { uid: true })) {
    if (m.uid < minUid) continue;
    const internalDate = m.internalDate ? new Date(m.internalDate) : null;
    const ids = providerIds(client, m.emailId, m.threadId);
    out.push(ingestor.headerRecord(m.uid, m.headers ?? Buffer.alloc(0), m.size ?? 0, internalDate, locationKey(m.uid), ids));
  }
  // servers answer in sequence order, which is UID order: sorting is almost always a no-op
  let sorted = true;
  for (let i = from + 1; i < out.length && sorted; i++) sorted = out[i - 1]!.uid < out[i]!.uid;
  if (!sorted) out.slice(from).sort((a, b) => a.uid - b.uid).forEach((r, i) => (out[from + i] = r));
  return out;
}

/**
 * UID sets of at most `maxRanges` ranges each (`1:3,7,9:10` is three): a folder whose UIDs
 * run without gaps is one FETCH, a scattered one several with bounded command lines.
 */
export function uidWindows(uids: number[], maxRanges: number): string[] {
  const parts = toRanges(uids).split(',').filter(Boolean);
  return chunk(parts, Math.max(1, maxRanges)).map((p) => p.join(','));
}

/**
 * Full sources (BODY.PEEK[]: nothing is marked \Seen) of some UIDs; messages larger than
 * `maxBytes` are read only up to it, so one huge attachment cannot exhaust memory (B25).
 */
export async function fetchSources(client: ImapFlow, records: HeaderRecord[], maxBytes: number): Promise<Map<number, { source: Buffer; complete: boolean }>> {
  const out = new Map<number, { source: Buffer; complete: boolean }>();
  const large = records.filter((r) => r.size > maxBytes).map((r) => r.uid);
  for (const uids of bySize(records.filter((r) => r.size <= maxBytes))) {
    for (const m of await client.fetchAll(toRanges(uids), { uid: true, source: true }, { uid: true })) {
      if (m.source) out.set(m.uid, { source: m.source, complete: true });
    }
  }
  if (large.length) {
    for (const m of await client.fetchAll(toRanges(large), { uid: true, source: { start: 0, maxLength: maxBytes } }, { uid: true })) {
      if (m.source) out.set(m.uid, { source: m.source, complete: false });
    }
  }
  return out;
}

/** Bytes of message sources asked for in one FETCH: bounds what one response holds in memory. */
const FETCH_BYTES = 16 * 1024 * 1024;

/** UIDs in groups whose RFC822.SIZE adds up to at most FETCH_BYTES (a larger message alone). */
function bySize(records: HeaderRecord[]): number[][] {
  const groups: number[][] = [];
  let current: number[] = [];
  let bytes = 0;
  for (const r of records) {
    if (current.length && bytes + r.size > FETCH_BYTES) {
      groups.push(current);
      current = [];
      bytes = 0;
    }
    current.push(r.uid);
    bytes += r.size;
  }
  if (current.length) groups.push(current);
  return groups;
}

/**
 * Sources by size, decided from RFC822.SIZE before anything is fetched (B25): messages up to
 * `maxRawBytes` are fetched whole (they are kept); larger ones up to `maxMessageBytes` are
 * streamed (BODY.PEEK[] in 64 KiB pieces) into the parser and never held whole; larger still
 * are not fetched at all.
 */
export async function fetchSourcesBySize(client: ImapFlow, records: HeaderRecord[], limits: { maxRawBytes: number; maxMessageBytes: number }): Promise<Map<number, SourceResult>> {
  const out = new Map<number, SourceResult>(await fetchSources(client, records.filter((r) => r.size <= limits.maxRawBytes), limits.maxRawBytes));
  for (const r of records) {
    if (r.size <= limits.maxRawBytes) continue;
    if (r.size > limits.maxMessageBytes) {
      out.set(r.uid, { skipped: `the message has ${r.size} bytes, more than sync.maxMessageBytes (${limits.maxMessageBytes}); only its header fields were read` });
    } else {
      out.set(r.uid, { stream: async () => (await client.download(String(r.uid), undefined, { uid: true })).content ?? null });
    }
  }
  return out;
}
