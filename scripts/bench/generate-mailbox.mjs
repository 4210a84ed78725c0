#!/usr/bin/env node
// A deterministic (seeded) recruiter mailbox: INBOX and Sent with a realistic mix of Gmail,
// Outlook (Thread-Index), Apple Mail, Thunderbird and bulk mail, sizes and attachments, and a
// given share of messages in threads that started in the ATS (Message-IDs in the ATS
// domain). Loads Dovecot fast by writing maildir files straight into a user's home of an
// instance started by scripts/dovecot.sh; no IMAP round trip per message.
//
// Used by the benchmarks (scripts/bench/*) and by tests that need big mailboxes:
//   import { generateMailbox, addDovecotUsers, writeMaildir } from '../../scripts/bench/generate-mailbox.mjs'
// Or from a shell:
//   node scripts/bench/generate-mailbox.mjs --dovecot-dir .run/test-dovecot --user NAME --pass PW --count 2000 [--seed 1] [--ats-share 0.02]
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { CLIENTS, createRandom, messageIdFor, paragraphText, quoteOf, renderMessage, sentence, threadIndex } from './lib/message-flavors.mjs';

export { createRandom } from './lib/message-flavors.mjs';

const FIRST = ['Avery', 'Blake', 'Casey', 'Dana', 'Eli', 'Finley', 'Gray', 'Harper', 'Indy', 'Jules', 'Kai', 'Logan', 'Morgan', 'Noel', 'Oakley', 'Parker', 'Quinn', 'Reese', 'Sage', 'Taylor'];
const LAST = ['Abbott', 'Brennan', 'Castillo', 'Dubois', 'Eriksen', 'Fontaine', 'Garcia', 'Haddad', 'Ito', 'Jansen', 'Kowalski', 'Lindqvist', 'Moreau', 'Novak', 'Okafor', 'Petrov', 'Quintero', 'Rossi', 'Sato', 'Tanaka'];
const ATTACHMENTS = [
  { ext: 'pdf', contentType: 'application/pdf', names: ['CV', 'Resume', 'Cover-letter', 'Offer', 'Portfolio', 'Report'] },
  { ext: 'docx', contentType: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document', names: ['CV', 'References', 'Notes'] },
  { ext: 'png', contentType: 'image/png', names: ['image001', 'screenshot', 'diagram'] },
];

/**
 * The messages of a mailbox, lazily (a 50,000-message mailbox does not sit in memory).
 * Options: seed, count (total messages), atsShare (share of messages in ATS threads),
 * owner {address, name} (the mailbox's owner), atsDomain, end (Date of the newest message), days (span),
 * attachmentShare, maxAttachmentBytes.
 * Returns { messages: Iterable<Message>, summary } where Message is
 * { folder: 'INBOX'|'Sent', date, flags, raw: Buffer, messageId, ats, threadNo } and `summary`
 * (filled while iterating) holds { candidates, atsThreads, counts }.
 */
export function generateMailbox(opts = {}) {
  const o = {
    seed: 1, count: 1000, atsShare: 0.02, atsDomain: 'ats.example.net', days: 60, end: new Date('2026-03-01T12:00:00Z'),
    owner: { address: 'robin.recruiter@example.com', name: 'Robin Recruiter' }, attachmentShare: 0.12, maxAttachmentBytes: 2_000_000,
    ...opts,
  };
  const rnd = createRandom(o.seed);
  // One seeded pool that attachments are sliced from: random-looking bytes (they do not
  // compress, like real PDFs and images) without generating megabytes per message.
  const pool = createRandom(o.seed ^ 0x5bd1e995).bytes(Math.max(4096, o.maxAttachmentBytes));
  const userDomain = o.owner.address.split('@')[1];
  const summary = { candidates: [], atsThreads: [], counts: { INBOX: 0, Sent: 0, ats: 0, attachments: 0, bytes: 0 } };
  const person = (domain, i) => {
    const first = FIRST[i % FIRST.length], last = LAST[Math.floor(i / FIRST.length) % LAST.length];
    return { name: `${first} ${last}`, address: `${first}.${last}${i >= 400 ? i : ''}@${domain}`.toLowerCase() };
  };
  const colleagues = Array.from({ length: 30 }, (_, i) => person(userDomain, i + 7));

  function attachmentsFor() {
    if (!rnd.chance(o.attachmentShare)) return [];
    const out = [];
    for (let i = rnd.chance(0.2) ? 2 : 1; i > 0; i--) {
      const kind = rnd.pick(ATTACHMENTS);
      const size = Math.max(2_000, rnd.skewed(kind.ext === 'png' ? 8_000 : 90_000, o.maxAttachmentBytes));
      const start = rnd.int(Math.max(1, pool.length - size));
      out.push({ filename: `${rnd.pick(kind.names)}-${rnd.range(1, 99)}.${kind.ext}`, contentType: kind.contentType, content: pool.subarray(start, start + size) });
    }
    return out;
  }

  function* thread(threadNo, kind, size, startDate) {
    const ats = kind === 'ats';
    const other = ats ? person('example.org', 1000 + summary.atsThreads.length) : kind === 'bulk' ? { name: 'Industry Weekly', address: 'news@mailer.example.org' } : rnd.chance(0.5) ? rnd.pick(colleagues) : person('example.org', rnd.int(380));
    const subject = ats ? `Your application: ${rnd.pick(['Backend Engineer', 'Product Designer', 'Data Analyst', 'Support Lead'])} (${rnd.hex(4)})` : kind === 'bulk' ? `Industry Weekly #${threadNo}` : sentence(rnd, rnd.range(3, 8)).slice(0, -1);
    const rootIndex = rnd.bytes(22);
    const messages = [];
    let date = startDate;
    // ATS threads start with the recruiter's message sent by the ATS; others either way
    let outbound = ats ? true : kind === 'bulk' ? false : rnd.chance(0.35);
    for (let i = 0; i < size; i++) {
      const from = outbound ? o.owner : other;
      const to = outbound ? other : o.owner;
      const client = kind === 'bulk' ? 'bulk' : outbound ? (ats && i === 0 ? 'gmail' : 'outlook') : rnd.pick(CLIENTS);
      const fromDomain = from.address.split('@')[1];
      const parent = messages[i - 1];
      const m = {
        client, from, to: [to], cc: !ats && rnd.chance(0.15) ? [rnd.pick(colleagues)] : [], inbound: !outbound,
        subject: i === 0 ? subject : `Re: ${subject}`, date,
        messageId: messageIdFor(rnd, client, fromDomain, ats && i === 0 ? o.atsDomain : null),
        inReplyTo: parent?.messageId ?? null,
        // Outlook keeps References short (often only the root and the parent)
        references: parent ? (client === 'outlook' ? [...new Set([messages[0].messageId, parent.messageId])] : [...parent.references, parent.messageId].slice(-12)) : [],
        threadIndex: threadIndex(rnd, rootIndex, i), body: paragraphText(rnd, rnd.skewed(kind === 'bulk' ? 4000 : 450, 20_000)),
        quote: parent ? quoteOf(parent) : '', attachments: attachmentsFor(), listId: 'weekly.mailer.example.org',
      };
      const raw = renderMessage(rnd, m);
      const folder = outbound ? 'Sent' : 'INBOX';
      summary.counts[folder]++;
      summary.counts.bytes += raw.length;
      if (m.attachments.length) summary.counts.attachments++;
      if (ats) summary.counts.ats++;
      messages.push(m);
      yield { folder, date, flags: outbound || rnd.chance(0.85) ? ['\\Seen'] : [], raw, messageId: m.messageId, ats, threadNo };
      date = new Date(date.getTime() + rnd.range(10 * 60, 2 * 86_400) * 1000);
      outbound = !outbound;
    }
    if (ats) {
      summary.candidates.push({ address: other.address, name: other.name });
      summary.atsThreads.push({ threadNo, subject, candidate: { address: other.address, name: other.name }, messageIds: messages.map((m) => m.messageId), rootIndex: rootIndex.toString('base64') });
    }
  }

  function* messages() {
    let produced = 0, atsProduced = 0, threadNo = 0;
    const span = o.days * 86_400_000;
    while (produced < o.count) {
      const left = o.count - produced;
      // keep the ATS share on target whatever thread sizes come out
      const wantAts = atsProduced < Math.round(o.atsShare * (produced + 1));
      const kind = wantAts ? 'ats' : rnd.chance(0.15) ? 'bulk' : 'plain';
      const size = Math.min(left, kind === 'bulk' ? 1 : kind === 'ats' ? rnd.range(2, 5) : rnd.chance(0.6) ? 1 : rnd.chance(0.75) ? rnd.range(2, 3) : rnd.range(4, 8));
      // threads start far enough back that their replies are not in the future
      const start = new Date(o.end.getTime() - span + rnd.int(Math.max(1, span - 10 * 86_400_000)));
      for (const msg of thread(threadNo++, kind, size, start)) {
        produced++;
        if (msg.ats) atsProduced++;
        yield msg;
      }
    }
  }

  return { messages: messages(), summary };
}

/**
 * A candidate's new reply to an ATS thread from `generateMailbox`'s summary, as a mail client
 * writes it (for APPEND while a mailbox is watched). `n` varies it; same inputs, same bytes.
 */
export function atsReply(atsThread, { owner = { address: 'robin.recruiter@example.com', name: 'Robin Recruiter' }, seed = 1, n = 0, date = new Date(), client } = {}) {
  const rnd = createRandom(seed * 7919 + n);
  const c = client ?? CLIENTS[n % CLIENTS.length];
  const ids = atsThread.messageIds;
  const parent = ids[ids.length - 1];
  const messageId = messageIdFor(rnd, c, atsThread.candidate.address.split('@')[1]);
  const raw = renderMessage(rnd, {
    client: c, from: atsThread.candidate, to: [owner], cc: [], inbound: true, subject: `Re: ${atsThread.subject}`, date, messageId,
    inReplyTo: parent, references: c === 'outlook' ? [...new Set([ids[0], parent])] : ids.slice(-12),
    threadIndex: threadIndex(rnd, Buffer.from(atsThread.rootIndex, 'base64'), ids.length), body: paragraphText(rnd, rnd.skewed(450, 5_000)),
    quote: `On an earlier day, ${owner.name ?? owner.address} wrote:\r\n> ${sentence(rnd, 12)}`, attachments: [], listId: '',
  });
  return { raw, messageId };
}

/** Maildir folder of a mailbox in Dovecot's default maildir++ layout. */
function folderDir(maildir, folder) {
  return folder === 'INBOX' ? maildir : path.join(maildir, `.${folder}`);
}

const FLAG_LETTERS = { '\\Draft': 'D', '\\Flagged': 'F', '\\Answered': 'R', '\\Seen': 'S', '\\Deleted': 'T' };

/**
 * Writes messages as maildir files into `home`/Maildir (INBOX and .Sent), owned by
 * uid/gid (Dovecot's mail user) with the message date as mtime (Dovecot's INTERNALDATE for
 * maildir). Returns how many were written.
 */
export function writeMaildir(home, messages, { uid = 8, gid = 8 } = {}) {
  const maildir = path.join(home, 'Maildir');
  const made = new Set();
  const mkdir = (dir) => {
    if (made.has(dir)) return;
    for (const sub of ['', 'cur', 'new', 'tmp']) {
      fs.mkdirSync(path.join(dir, sub), { recursive: true });
      fs.chownSync(path.join(dir, sub), uid, gid);
    }
    made.add(dir);
  };
  for (const d of [home, maildir]) {
    fs.mkdirSync(d, { recursive: true });
    fs.chownSync(d, uid, gid);
  }
  mkdir(maildir);
  let n = 0;
  for (const m of messages) {
    const dir = folderDir(maildir, m.folder);
    mkdir(dir);
    const secs = Math.floor(m.date.getTime() / 1000);
    const flags = m.flags.map((f) => FLAG_LETTERS[f] ?? '').sort().join('');
    // S= and W= (sizes; the file is CRLF so both are the same) spare Dovecot a stat and a read
    const file = path.join(dir, 'cur', `${secs}.M${n}P1.mailsync,S=${m.raw.length},W=${m.raw.length}:2,${flags}`);
    fs.writeFileSync(file, m.raw);
    fs.chownSync(file, uid, gid);
    fs.utimesSync(file, m.date, m.date);
    n++;
  }
  // Dovecot needs the Sent folder to exist to list it, even when empty
  mkdir(folderDir(maildir, 'Sent'));
  return n;
}

/** Connection details written by `scripts/dovecot.sh start` (DIR/env.json). */
export function dovecotEnv(dovecotDir) {
  return JSON.parse(fs.readFileSync(path.join(dovecotDir, 'env.json'), 'utf8'));
}

/** A user's home inside an instance of scripts/dovecot.sh (`home=DIR/mail/%u`). */
export function dovecotHome(dovecotDir, user) {
  return path.join(dovecotDir, 'mail', user);
}

/**
 * Adds many users to a running instance at once (one append to its passwd file) and
 * resolves once Dovecot can see them. Names [A-Za-z0-9._-]; passwords without ':'.
 */
export async function addDovecotUsers(dovecotDir, users) {
  for (const u of users) {
    if (!/^[A-Za-z0-9._-]+$/.test(u.user)) throw new Error(`invalid Dovecot user name: ${u.user}`);
    if (!/^[^:\r\n]+$/.test(u.pass)) throw new Error(`invalid password for ${u.user}: it must be non-empty without ':' or newlines`);
  }
  const file = path.join(dovecotDir, 'users');
  // one O_APPEND write, so concurrent writers never interleave lines
  fs.appendFileSync(file, users.map((u) => `${u.user}:{PLAIN}${u.pass}::::::\n`).join(''));
  // Dovecot re-reads the passwd file when its mtime changes but checks at most once per
  // wall-clock second: a login within the second of the append could miss the new users.
  await new Promise((r) => setTimeout(r, 1020 - (Date.now() % 1000)));
}

/**
 * Generates a mailbox and writes it into the home of `user` in a running scripts/dovecot.sh
 * instance (adding the user when `pass` is given). Returns the summary: candidates, ATS
 * threads (with their Message-IDs), counts.
 */
export async function loadMailbox(dovecotDir, { user, pass, ...genOpts }) {
  if (pass) await addDovecotUsers(dovecotDir, [{ user, pass }]);
  const { messages, summary } = generateMailbox(genOpts);
  summary.written = writeMaildir(dovecotHome(dovecotDir, user), messages);
  return summary;
}

async function main() {
  const { values } = parseArgs({
    options: {
      'dovecot-dir': { type: 'string' }, user: { type: 'string' }, pass: { type: 'string' }, count: { type: 'string', default: '1000' },
      seed: { type: 'string', default: '1' }, 'ats-share': { type: 'string', default: '0.02' }, 'ats-domain': { type: 'string', default: 'ats.example.net' },
      address: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || !values['dovecot-dir'] || !values.user) {
    process.stdout.write('usage: node scripts/bench/generate-mailbox.mjs --dovecot-dir DIR --user NAME [--pass PW] [--count N] [--seed N] [--ats-share 0.02] [--ats-domain D] [--address A]\n');
    return values.help ? 0 : 2;
  }
  const started = Date.now();
  const summary = await loadMailbox(path.resolve(values['dovecot-dir']), {
    user: values.user, pass: values.pass, count: Number(values.count), seed: Number(values.seed), atsShare: Number(values['ats-share']),
    atsDomain: values['ats-domain'], ...(values.address ? { owner: { address: values.address, name: null } } : {}),
  });
  process.stdout.write(`${JSON.stringify({ written: summary.written, counts: summary.counts, atsThreads: summary.atsThreads.length, ms: Date.now() - started })}\n`);
  return 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().then((code) => { process.exitCode = code; }, (err) => { process.stderr.write(`generate-mailbox: ${err.message}\n`); process.exitCode = 1; });
}
