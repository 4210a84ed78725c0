import type { ImapFlow, SearchObject } from 'imapflow';
import { parseAddressList } from '../threads/addresses.js';
import { allNormalisedIds, normaliseId } from '../threads/message-ids.js';
import type { FolderRole } from '../store/records.js';
import { chunk, fetchHeaderRecords, toRanges } from './imap-folders.js';
import { gmailAddressQuery, gmailAllFolder, isAllMail } from './gmail.js';
import { headerFields, type HeaderRecord, type Ingestor } from './ingestor.js';

/**
 * Finding older conversations in a mailbox with server-side SEARCH: the messages from, to or cc
 * a candidate (INBOX, \Sent and \All; on Gmail All Mail with X-GM-RAW), then the rest of their
 * threads by Message-ID, In-Reply-To and References, until no new message turns up. Only header
 * fields are fetched here; nothing in the mailbox changes (EXAMINE, BODY.PEEK).
 */

export interface SearchFolder {
  path: string;
  role: FolderRole;
  gmail: boolean;
}

export interface Found {
  folder: string;
  uidValidity: string;
  rec: HeaderRecord;
  /** True when the candidate is in From, To or Cc (not only a relative in the thread). */
  matched: boolean;
}

export interface SearchProgress {
  total: number;
  scanned: number;
  matched: number;
}

/** Ids searched for per command: keeps command lines short on any server (B43). */
const IDS_PER_SEARCH = 20;
/** Thread closure rounds; real threads close in two or three. */
const MAX_ROUNDS = 6;

export async function importFolders(client: ImapFlow): Promise<SearchFolder[]> {
  const list = await client.list();
  const all = gmailAllFolder(client, list);
  // on Gmail, All Mail holds INBOX and Sent: searching them too would only find copies
  if (all) return [{ path: all.path, role: 'all', gmail: true }];
  const out: SearchFolder[] = [{ path: 'INBOX', role: 'inbox', gmail: false }];
  for (const m of list) {
    if (m.flags?.has('\\Noselect')) continue;
    if (m.specialUse === '\\Sent') out.push({ path: m.path, role: 'sent', gmail: false });
    if (isAllMail(m)) out.push({ path: m.path, role: 'all', gmail: false });
  }
  return out;
}

export interface SearchDeps {
  ingestor: Ingestor;
  normalise: (address: string) => string;
  batchSize: number;
  locationKey: (folder: string, uidValidity: string, uid: number) => string;
  onProgress: (p: SearchProgress) => Promise<void> | void;
}

/** Whether any of `addresses` (normalised) is in the record's From, To or Cc. */
export function mentions(rec: HeaderRecord, addresses: ReadonlySet<string>, normalise: (a: string) => string): boolean {
  const fields = headerFields(rec);
  const people = ['from', 'to', 'cc'].flatMap((h) => fields.filter((f) => f.key === h).flatMap((f) => parseAddressList(f.value)));
  return people.some((p) => addresses.has(normalise(p.address)));
}

/** Messages of the candidate and their whole threads, across the import folders. */
export async function findConversations(
  client: ImapFlow, folders: SearchFolder[], seed: { addresses: string[]; since: Date | null } | { messageId: string }, deps: SearchDeps,
): Promise<Found[]> {
  const found = new Map<string, Found>();
  const progress: SearchProgress = { total: 0, scanned: 0, matched: 0 };
  const wanted = 'addresses' in seed ? new Set(seed.addresses.map(deps.normalise)) : null;
  const add = (f: Found) => {
    const old = found.get(f.rec.key);
    if (!old) found.set(f.rec.key, f);
    else if (f.matched && !old.matched) old.matched = true;
  };

  const fetchRecords = async (folder: string, uidValidity: string, uids: number[]): Promise<HeaderRecord[]> => {
    const out: HeaderRecord[] = [];
    for (const part of chunk(uids.sort((a, b) => a - b), deps.batchSize)) {
      out.push(...(await fetchHeaderRecords(client, toRanges(part), 0, deps.ingestor, (uid) => deps.locationKey(folder, uidValidity, uid))));
      progress.scanned += part.length;
      await deps.onProgress(progress);
    }
    return out;
  };

  // the seed: the candidate's mail, or one message named by its Message-ID
  for (const folder of folders) {
    const box = await client.mailboxOpen(folder.path, { readOnly: true });
    if (!box.exists) continue;
    const uidValidity = String(box.uidValidity);
    let query: SearchObject;
    if ('messageId' in seed) query = { header: { 'message-id': seed.messageId } };
    else if (folder.gmail) query = { gmraw: gmailAddressQuery(seed.addresses) };
    else query = { or: seed.addresses.flatMap((a) => [{ from: a }, { to: a }, { cc: a }]) };
    if ('addresses' in seed && seed.since) query = { ...query, since: seed.since };
    const uids = (await client.search(query, { uid: true })) || [];
    progress.total += uids.length;
    for (const rec of await fetchRecords(folder.path, uidValidity, uids)) {
      // SEARCH matches substrings ("ann@" in "joann@"): keep only real matches
      const matched = wanted ? mentions(rec, wanted, deps.normalise) : !!rec.ids.messageId && normaliseId(rec.ids.messageId) === normaliseId((seed as { messageId: string }).messageId);
      if (!matched) continue;
      progress.matched++;
      add({ folder: folder.path, uidValidity, rec, matched: true });
    }
  }
  await deps.onProgress(progress);

  // the rest of each thread: parents by Message-ID, replies by In-Reply-To / References
  const searched = new Set<string>();
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const ids = [...new Set([...found.values()].flatMap((f) => allNormalisedIds(f.rec.ids)))].filter((id) => !searched.has(id));
    if (ids.length === 0) break;
    ids.forEach((id) => searched.add(id));
    const before = found.size;
    for (const folder of folders) {
      const box = await client.mailboxOpen(folder.path, { readOnly: true });
      if (!box.exists) continue;
      const uidValidity = String(box.uidValidity);
      const uids = new Set<number>();
      for (const part of chunk(ids, IDS_PER_SEARCH)) {
        const or: SearchObject[] = part.flatMap((id) => ['message-id', 'references', 'in-reply-to'].map((h) => ({ header: { [h]: id } })));
        for (const uid of (await client.search({ or }, { uid: true })) || []) uids.add(uid);
      }
      const known = new Set([...found.values()].filter((f) => f.folder === folder.path).map((f) => f.rec.uid));
      const fresh = [...uids].filter((u) => !known.has(u));
      progress.total += fresh.length;
      for (const rec of await fetchRecords(folder.path, uidValidity, fresh)) {
        // HEADER search is a substring match too: keep messages that really share an id
        if (!allNormalisedIds(rec.ids).some((id) => searched.has(id))) continue;
        const matched = wanted ? mentions(rec, wanted, deps.normalise) : false;
        if (matched) progress.matched++;
        add({ folder: folder.path, uidValidity, rec, matched });
      }
    }
    await deps.onProgress(progress);
    if (found.size === before) break;
  }
  return [...found.values()];
}
