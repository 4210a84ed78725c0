import crypto from 'node:crypto';
import type { Test } from 'tap';
import { buildMessage, createMailbox, dovecotEnv, seedMaildir, type Account } from '../helpers/dovecot.js';
import { startDaemon, startReceiver, waitUntil, WEBHOOK_SECRET, type RunningDaemon } from '../helpers/daemon.js';

/**
 * The world the ACL matrix runs in, seeded once through the real ingest path: six recruiters'
 * mailboxes on the real Dovecot, each holding the same ATS thread T; the daemon syncs them
 * over IMAP and every mailbox owner imports one older message of T. Each ATS user stands in
 * exactly one relation to T, so a cell of the matrix tests one rule:
 *
 * - `setter`: makes T secret; none of their addresses is in T (T reaches them by Bcc)
 * - `from`: From of T's first message only
 * - `to`: To of the candidate's replies only
 * - `cc`: Cc of the first message only
 * - `alias`: only an alias of theirs (not their email) is in Cc of the second message
 * - `unrelated`: none of their addresses is in T (T reaches them by Bcc)
 *
 * Candidates c1, c2, c3 each have T and open ATS threads around it, so T sits in the middle,
 * at the tail and at the head of their thread lists.
 */

export const RELATIONS = ['setter', 'from', 'to', 'cc', 'alias', 'unrelated'] as const;
export type Relation = (typeof RELATIONS)[number];
/** Relations whose user is a participant of T (or made it secret): they see T when it is secret. */
export const SEES_SECRET: ReadonlySet<Relation> = new Set(['setter', 'from', 'to', 'cc', 'alias']);

export const userIdOf = (r: Relation) => `acl-${r}`;
export const ALIAS_ADDRESS = 'alias.other@example.com';
export const CANDIDATES = { c1: 'pat.acl@example.org', c2: 'quinn.acl@example.org', c3: 'robin.acl@example.org' } as const;
/** T's position in each candidate's list (newest activity first). */
export const LIST_SHAPE = { c1: 'middle', c2: 'tail', c3: 'head' } as const;
export const SYNC_SINCE = '2024-01-01T00:00:00Z';
export const MAX_MESSAGE_BYTES = 100_000;

const day = (d: number, h = 9) => new Date(Date.UTC(2024, 2, d, h));
const oldDay = (d: number) => new Date(Date.UTC(2023, 5, d, 9));
const importAddress = (r: Relation) => `imp-${r}@example.org`;
export const importCandidate = (r: Relation) => `acl-imp-${r}`;

export interface World {
  d: RunningDaemon;
  receiver: Awaited<ReturnType<typeof startReceiver>>;
  logins: Record<Relation, Account>;
  /**
   * T: its id, its message keys, its first message (the ATS original, with an attachment), its
   * second (in every mailbox), and per mailbox the oversized message that is quarantined there.
   */
  t: { id: string; keys: string[]; first: { key: string; messageId: string; attachmentId: string }; second: { key: string; messageId: string }; quarantined: Record<Relation, string> };
  /** Open threads per candidate, and each candidate's list as an admin sees it (ids, newest first). */
  lists: Record<keyof typeof CANDIDATES, string[]>;
  /** Import job per mailbox owner: each imported one older message of T for its own candidate. */
  imports: Record<Relation, string>;
  /** Per mailbox: how many threads and messages it holds that are not T's (all open). */
  openInMailbox: Record<Relation, { threads: number; messages: number }>;
  /** T's messages in each mailbox (the two shared ones, its oversized one and its older one). */
  tMessagesPerMailbox: number;
}

export async function seedWorld(t: Test): Promise<World> {
  const env = dovecotEnv();
  const accounts = await Promise.all(RELATIONS.map((r) => createMailbox(`acl-${r}`)));
  const logins = Object.fromEntries(RELATIONS.map((r, i) => [r, accounts[i]!])) as Record<Relation, Account>;
  const addr = (r: Relation) => logins[r].address;
  const tag = crypto.randomBytes(4).toString('hex');

  // T: the ATS original, the candidate's reply to the recruiter's colleague, and an oversized reply
  const m1 = `<acl-t1-${tag}@ats.example.net>`;
  const m2 = `<acl-t2-${tag}@example.org>`;
  // one per mailbox, above sync.maxMessageBytes: stored with its header fields only and quarantined
  const oversized = (r: Relation) => `<acl-big-${r}-${tag}@example.org>`;
  const tSubject = `Offer discussion ${tag}`;
  const shared = [
    {
      raw: buildMessage({
        from: `Fran From <${addr('from')}>`, to: `Pat <${CANDIDATES.c1}>`, cc: [addr('cc'), CANDIDATES.c2], subject: tSubject, messageId: m1, date: day(10),
        text: 'The confidential offer is attached.', attachments: [{ filename: 'offer.txt', contentType: 'text/plain', content: Buffer.from('salary: confidential\n') }],
      }),
      date: day(10),
    },
    {
      raw: buildMessage({
        // the alias as the mail writes it, in another case than the ATS registered it
        from: `Pat <${CANDIDATES.c1}>`, to: addr('to'), cc: [`Al Other <${ALIAS_ADDRESS.toUpperCase()}>`, CANDIDATES.c3], subject: `Re: ${tSubject}`, messageId: m2, inReplyTo: m1, references: m1, date: day(11),
        text: 'Thank you, some questions about the offer.',
      }),
      date: day(11),
    },
  ];
  // open threads around T in the candidates' lists, in the `from` user's mailbox only
  const open = [
    { cand: CANDIDATES.c1, date: day(20) }, { cand: CANDIDATES.c1, date: day(1) },
    { cand: CANDIDATES.c2, date: day(21) },
    { cand: CANDIDATES.c3, date: day(2) },
  ].map((o, i) => ({ raw: buildMessage({ from: addr('from'), to: o.cand, subject: `Open ${i} ${tag}`, messageId: `<acl-open${i}-${tag}@ats.example.net>`, date: o.date, text: `Open thread ${i}.` }), date: o.date }));

  await Promise.all(RELATIONS.map((r) => seedMaildir(logins[r], 'INBOX', [
    ...shared,
    ...(r === 'from' ? open : []),
    {
      raw: buildMessage({
        from: `Pat <${CANDIDATES.c1}>`, to: addr('to'), subject: `Re: ${tSubject}`, messageId: oversized(r), inReplyTo: m2, references: [m1, m2], date: day(12),
        text: 'My signed copy.', attachments: [{ filename: 'signed.bin', contentType: 'application/octet-stream', content: crypto.randomBytes(MAX_MESSAGE_BYTES * 2) }],
      }),
      date: day(12),
    },
    // older than the sync window: only this mailbox's import brings it in
    { raw: buildMessage({ from: importAddress(r), to: addr('to'), subject: `Re: ${tSubject}`, messageId: `<acl-old-${r}-${tag}@example.org>`, inReplyTo: m1, references: m1, date: oldDay(1), text: 'An older note.' }), date: oldDay(1) },
  ])));

  const receiver = await startReceiver(t);
  const d = await startDaemon(t, {
    overrides: {
      webhooks: { url: receiver.url, secret: WEBHOOK_SECRET },
      // messages up to store.maxRawBytes are fetched whole whatever sync.maxMessageBytes says
      store: { maxRawBytes: MAX_MESSAGE_BYTES / 2 },
      sync: { tlsCaFile: env.caFile, maxMessageBytes: MAX_MESSAGE_BYTES },
    },
  });
  const ok = async (what: string, p: Promise<{ status: number; body: unknown }>, status = 200) => {
    const res = await p;
    if (res.status !== status) throw new Error(`${what}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  };
  for (const r of RELATIONS) {
    await ok(`user ${r}`, d.api('PUT', `/v1/users/${userIdOf(r)}`, { body: { email: addr(r), aliases: r === 'alias' ? ['Alias.Other@example.com'] : [], name: `ACL ${r}` } }));
    await ok(`import candidate ${r}`, d.api('PUT', `/v1/candidates/${importCandidate(r)}`, { body: { emails: [importAddress(r)] } }));
  }
  for (const [cid, email] of Object.entries(CANDIDATES)) await ok(`candidate ${cid}`, d.api('PUT', `/v1/candidates/${cid}`, { body: { emails: [email] } }));
  for (const r of RELATIONS) {
    await ok(`consent ${r}`, d.api('PUT', `/v1/users/${userIdOf(r)}/mailbox`, {
      actingUser: userIdOf(r),
      body: { imap: { host: env.host, port: env.port, secure: false, auth: { user: logins[r].user, pass: logins[r].pass } }, syncSince: SYNC_SINCE },
    }), 202);
  }
  const admin = { actingUser: 'acl-root', role: 'super_admin' };
  await waitUntil(async () => {
    for (const r of RELATIONS) {
      const s = await d.api<{ state: string; counts: { messages: number } }>('GET', `/v1/users/${userIdOf(r)}/mailbox`, admin);
      if (s.body.state !== 'live' || s.body.counts.messages < shared.length + 1 + (r === 'from' ? open.length : 0)) return false;
    }
    return true;
  }, 'every mailbox live with T synced', 60_000);

  // every owner imports its older message of T, for its own candidate
  const imports = {} as Record<Relation, string>;
  for (const r of RELATIONS) {
    const job = await ok(`import ${r}`, d.api<{ id: string }>('POST', `/v1/candidates/${importCandidate(r)}/imports`, { actingUser: userIdOf(r), body: { userId: userIdOf(r) } }), 202) as { id: string };
    imports[r] = job.id;
  }
  for (const r of RELATIONS) {
    const view = await waitUntil(async () => {
      const j = (await d.api<{ state: string; threadsLinked: number; imported: number }>('GET', `/v1/imports/${imports[r]}`, admin)).body;
      return j.state === 'done' || j.state === 'failed' ? j : null;
    }, `import of ${r}`, 30_000);
    if (view.state !== 'done' || view.threadsLinked !== 1 || view.imported !== 1) throw new Error(`import of ${r}: ${JSON.stringify(view)}`);
  }

  type ThreadView = { id: string; messages: Array<{ id: string; messageId: string; attachments: Array<{ id: string }> }> };
  const lists = {} as World['lists'];
  for (const cid of Object.keys(CANDIDATES) as Array<keyof typeof CANDIDATES>) {
    const res = await d.api<{ threads: Array<{ id: string; subject: string }> }>('GET', `/v1/candidates/${cid}/threads?limit=100`, admin);
    lists[cid] = res.body.threads.map((x) => x.id);
  }
  const tId = (await d.api<{ threads: Array<{ id: string; subject: string }> }>('GET', '/v1/candidates/c1/threads?limit=100', admin)).body.threads.find((x) => x.subject === tSubject)!.id;
  const thread = (await d.api<ThreadView>('GET', `/v1/threads/${tId}`, admin)).body;
  const byId = (id: string) => thread.messages.find((m) => m.messageId === id)!;
  const tInfo: World['t'] = {
    id: tId, keys: thread.messages.map((m) => m.id),
    first: { key: byId(m1).id, messageId: m1, attachmentId: byId(m1).attachments[0]!.id },
    second: { key: byId(m2).id, messageId: m2 },
    quarantined: Object.fromEntries(RELATIONS.map((r) => [r, byId(oversized(r)).id])) as Record<Relation, string>,
  };
  if (tInfo.keys.length !== shared.length + 2 * RELATIONS.length) throw new Error(`T has ${tInfo.keys.length} messages`);
  const openInMailbox = Object.fromEntries(RELATIONS.map((r) => [r, r === 'from' ? { threads: open.length, messages: open.length } : { threads: 0, messages: 0 }])) as World['openInMailbox'];
  return { d, receiver, logins, t: tInfo, lists, imports, openInMailbox, tMessagesPerMailbox: shared.length + 2 };
}
