import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { appendMessage, buildMessage, createMailbox, dovecotEnv, mailboxSnapshot, type SnapshotMessage } from '../helpers/dovecot.js';
import { waitUntil } from '../helpers/daemon.js';
import { spawnDaemon, writeConfig, type DaemonProcess } from '../helpers/daemon-process.js';
import { maildirDigest } from '../helpers/maildir.js';
import { tempDir } from '../helpers/stack.js';

/**
 * A removal lasts (the "done when"), with the built daemon as a real process on the
 * real Dovecot: an email removed from a candidate's profile, and a conversation removed whole,
 * stay off that profile across (c) a restart, (d) a UIDVALIDITY change, (a) a full resync after
 * consent is revoked and granted again — with the stored mail kept, and with it purged and
 * fetched anew — and (b) a re-import for the candidate. The mailbox is byte for byte and flag
 * for flag as it was, read both through IMAP and from the Maildir files.
 */

t.setTimeout(180_000);

const CAND = 'pat.lasting@example.org';
const day = (n: number) => new Date(Date.UTC(2025, 0, n, 9));

interface Summary { id: string; subject: string; messageCount: number }
interface ThreadView extends Summary { messages: Array<{ id: string; messageId: string }>; candidateIds: string[] }

t.test('a removal survives restarts, renumbering, resyncs and re-imports; the mailbox never changes', async (t) => {
  // daemons outlive the subtests that start them
  const top = t;
  const login = await createMailbox('lasting');
  const me = login.address;
  const env = dovecotEnv();
  const mail = (id: string, n: number, from: string, to: string, subject: string, parent?: string) =>
    buildMessage({ from, to, subject, messageId: `<${id}>`, date: day(n), text: `Text of ${id}.`, ...(parent ? { inReplyTo: `<${parent}>`, references: `<${parent}>` } : {}) });
  // T keeps two of its three messages on the profile; U is removed whole. Flags of every kind.
  await appendMessage(login, 'Sent', mail('t0@ats.example.net', 1, me, CAND, 'Interview T'), ['\\Seen'], day(1));
  await appendMessage(login, 'Sent', mail('u0@ats.example.net', 3, me, CAND, 'Interview U'), ['\\Seen'], day(3));
  await appendMessage(login, 'INBOX', mail('t1@example.org', 2, CAND, me, 'Re: Interview T', 't0@ats.example.net'), ['\\Seen', '\\Flagged'], day(2));
  await appendMessage(login, 'INBOX', mail('t2@example.org', 4, CAND, me, 'Re: Interview T', 't1@example.org'), [], day(4));
  await appendMessage(login, 'INBOX', mail('u1@example.org', 5, CAND, me, 'Re: Interview U', 'u0@ats.example.net'), ['\\Seen', '\\Answered', '$Label1'], day(5));
  const mailRoot = path.join(env.dir, 'mail');
  const imapBefore = await mailboxSnapshot(login);
  const diskBefore = maildirDigest(mailRoot, login.user);

  const dir = tempDir(t);
  const configFile = writeConfig(dir, { webhooks: { url: '' }, sync: { tlsCaFile: env.caFile, sentPollSeconds: 1 } });
  const logFile = path.join(dir, 'daemon.log');
  let d: DaemonProcess = await spawnDaemon(t, configFile, logFile);
  const restart = async () => {
    d.child.kill('SIGTERM');
    t.same(await d.exited, { code: 0, signal: null }, 'stopped cleanly');
    d = await spawnDaemon(t, configFile, logFile);
  };
  const status = async () => (await d.api<{ state: string; counts: { messages: number }; folders: Array<{ path: string; uidValidity: string }> }>('GET', '/v1/users/u1/mailbox', undefined, 'u1')).body;
  const grant = async () => {
    const res = await d.api('PUT', '/v1/users/u1/mailbox', { imap: { host: env.host, port: env.port, secure: false, auth: { user: login.user, pass: login.pass } }, syncSince: '2024-06-01T00:00:00Z' }, 'u1');
    if (res.status !== 202) throw new Error(`consent: ${res.status}`);
  };
  const synced = () => waitUntil(async () => {
    const s = await status();
    return s.state === 'live' && s.counts.messages === 5 ? s : null;
  }, 'the mailbox live with all five messages stored', 30_000);
  /** c1's profile: per thread in list order, its subject, messageCount and the Message-IDs shown. */
  const profile = async () => {
    const list = (await d.api<{ threads: Summary[] }>('GET', '/v1/candidates/c1/threads?limit=50')).body.threads;
    const out: Array<[string, number, string[]]> = [];
    for (const x of list) {
      const view = (await d.api<ThreadView>('GET', `/v1/threads/${x.id}?candidateId=c1`)).body;
      out.push([x.subject.replace(/^Re: /, ''), x.messageCount, view.messages.map((m) => m.messageId)]);
    }
    return out;
  };
  const EXPECTED: Array<[string, number, string[]]> = [['Interview T', 2, ['<t0@ats.example.net>', '<t2@example.org>']]];

  await d.api('PUT', '/v1/users/u1', { email: me });
  await d.api('PUT', '/v1/candidates/c1', { emails: [CAND] });
  await grant();
  await synced();
  t.same(await profile(), [
    ['Interview U', 2, ['<u0@ats.example.net>', '<u1@example.org>']],
    ['Interview T', 3, ['<t0@ats.example.net>', '<t1@example.org>', '<t2@example.org>']],
  ], 'before: both conversations on the profile');

  const keyOf = async (messageId: string) => {
    const feed = (await d.api<{ events: Array<{ type: string; data: { message?: { id: string; messageId: string } } }> }>('GET', '/v1/events?limit=1000')).body.events;
    return feed.find((e) => e.data.message?.messageId === messageId)!.data.message!.id;
  };
  for (const id of ['<t1@example.org>', '<u0@ats.example.net>', '<u1@example.org>']) {
    t.equal((await d.api('DELETE', `/v1/candidates/c1/messages/${await keyOf(id)}`)).status, 204, `${id} removed`);
  }
  t.same(await profile(), EXPECTED, 'after the removals: T without t1, U gone');

  await t.test('(c) a restart of the daemon', async (t) => {
    await restart();
    await synced();
    t.same(await profile(), EXPECTED);
  });

  let imapRenumbered: Record<string, SnapshotMessage[]> = {};
  let diskRenumbered: Record<string, string[]> = {};
  await t.test('(d) a UIDVALIDITY change of both folders', async (t) => {
    const before = await status();
    d.child.kill('SIGTERM');
    await d.exited;
    // a server migration: Dovecot loses its UID lists and indexes and numbers the folders afresh
    const maildir = path.join(mailRoot, login.user, 'Maildir');
    for (const folder of [maildir, path.join(maildir, '.Sent')]) {
      for (const f of fs.readdirSync(folder)) if (f === 'dovecot-uidlist' || f.startsWith('dovecot.index')) fs.rmSync(path.join(folder, f));
    }
    imapRenumbered = await mailboxSnapshot(login);
    diskRenumbered = maildirDigest(mailRoot, login.user);
    d = await spawnDaemon(top, configFile, logFile);
    const after = await waitUntil(async () => {
      const s = await status();
      const renumbered = s.folders.every((f) => f.uidValidity !== before.folders.find((b) => b.path === f.path)?.uidValidity);
      return renumbered && s.state === 'live' && s.counts.messages === 5 ? s : null;
    }, 'both folders rebuilt under their new UIDVALIDITY', 30_000);
    t.same(after.folders.map((f) => f.path).sort(), ['INBOX', 'Sent']);
    t.ok(d.logs.some((l) => l.includes('UIDVALIDITY changed')), 'the rebuild happened');
    t.same(await profile(), EXPECTED);
  });

  await t.test('(a) a full resync: consent revoked and granted again, stored mail kept', async (t) => {
    t.equal((await d.api('DELETE', '/v1/users/u1/mailbox?purge=false', undefined, 'u1')).status, 204);
    await grant();
    await synced();
    t.same(await profile(), EXPECTED);
  });

  await t.test('(a) a full resync after a purge: every message stored anew', async (t) => {
    t.equal((await d.api('DELETE', '/v1/users/u1/mailbox?purge=true', undefined, 'u1')).status, 204);
    t.same(await profile(), [], 'the purge left nothing of the mailbox');
    const eventsBefore = (await d.api<{ events: unknown[] }>('GET', '/v1/events?limit=1000')).body.events.length;
    await grant();
    await synced();
    t.same(await profile(), EXPECTED);
    const created = (await d.api<{ events: Array<{ type: string; data: { candidateIds: string[]; message?: { messageId: string } } }> }>('GET', '/v1/events?limit=1000')).body.events
      .slice(eventsBefore).filter((e) => e.type === 'message.created');
    const named = Object.fromEntries(created.map((e) => [e.data.message!.messageId, e.data.candidateIds]));
    t.same(named, {
      '<t0@ats.example.net>': ['c1'], '<t1@example.org>': [], '<t2@example.org>': ['c1'], '<u0@ats.example.net>': [], '<u1@example.org>': [],
    }, 'the events of the new copies do not name c1 for the removed ones');
  });

  await t.test('(b) a re-import for the candidate', async (t) => {
    const job = await d.api<{ id: string }>('POST', '/v1/candidates/c1/imports', { userId: 'u1' }, 'u1');
    t.equal(job.status, 202);
    const done = await waitUntil(async () => {
      const j = (await d.api<{ state: string; matched: number; threadsLinked: number }>('GET', `/v1/imports/${job.body.id}`, undefined, 'u1')).body;
      return j.state === 'done' || j.state === 'failed' ? j : null;
    }, 'the import', 30_000);
    t.same([done.state, done.matched, done.threadsLinked], ['done', 5, 0], 'all five found, nothing linked again');
    t.same(await profile(), EXPECTED);
    await restart();
    await synced();
    t.same(await profile(), EXPECTED, 'and after one more restart');
  });

  await t.test('the mailbox is exactly as it was', async (t) => {
    t.same(await mailboxSnapshot(login), imapRenumbered, 'through IMAP: the same UIDs, flags, sizes and bytes since the renumbering');
    t.same(maildirDigest(mailRoot, login.user), diskRenumbered, 'on disk: the same files, flags in their names, and bytes since the renumbering');
    t.same(diskRenumbered, diskBefore, 'and the renumbering itself changed no message file');
    const content = (s: Record<string, SnapshotMessage[]>) => Object.fromEntries(Object.entries(s).map(([f, ms]) => [f, ms.map((m) => `${m.sha256} ${m.flags.join(' ')}`).sort()]));
    t.same(content(imapRenumbered), content(imapBefore), 'through IMAP the same messages and flags as at the start');
  });
  d.child.kill('SIGTERM');
  await d.exited;
});
