import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Delivery straight into a Dovecot user's Maildir, the way a local MTA delivers: the file is
 * written under tmp/ and renamed into new/ (atomic), owned by the mail user. Works while
 * Dovecot is stopped (mail that arrives during a restart) and is fast enough to seed
 * thousands of messages.
 */

let mailIds: { uid: number; gid: number } | null = null;

function mailOwner(): { uid: number; gid: number } {
  mailIds ??= {
    uid: Number(execFileSync('id', ['-u', 'mail'], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', 'mail'], { encoding: 'utf8' }).trim()),
  };
  return mailIds;
}

function ensureDir(dir: string): void {
  if (fs.existsSync(dir)) return;
  ensureDir(path.dirname(dir));
  fs.mkdirSync(dir, { mode: 0o700 });
  const { uid, gid } = mailOwner();
  fs.chownSync(dir, uid, gid);
}

let counter = 0;

/** `folder` is 'INBOX' or a top-level folder name ('Sent'). */
export function deliverToMaildir(mailRoot: string, user: string, folder: string, raw: string | Buffer, opts: { seen?: boolean } = {}): void {
  const base = path.join(mailRoot, user, 'Maildir', folder === 'INBOX' ? '' : `.${folder}`);
  for (const sub of ['tmp', 'new', 'cur']) ensureDir(path.join(base, sub));
  const name = `${Date.now()}.M${process.pid}P${++counter}R${crypto.randomBytes(4).toString('hex')}.mailsync-test`;
  const tmp = path.join(base, 'tmp', name);
  fs.writeFileSync(tmp, raw);
  const { uid, gid } = mailOwner();
  fs.chownSync(tmp, uid, gid);
  // cur/ with the S flag for mail that was already read (Sent copies), new/ otherwise
  fs.renameSync(tmp, opts.seen ? path.join(base, 'cur', `${name}:2,S`) : path.join(base, 'new', name));
}

/**
 * Every message file of a Dovecot user's Maildir, per folder, as `cur|new/<file name> <sha256>`.
 * The file name carries the message's flags (`:2,FS`), so two equal digests mean the same
 * messages with the same bytes and the same flags: what "the mailbox was not changed" means,
 * read from the disk rather than through IMAP. Dovecot's own index and UID list are left out.
 */
export function maildirDigest(mailRoot: string, user: string): Record<string, string[]> {
  const root = path.join(mailRoot, user, 'Maildir');
  const out: Record<string, string[]> = {};
  const folders = ['', ...fs.readdirSync(root).filter((f) => f.startsWith('.') && fs.statSync(path.join(root, f)).isDirectory())];
  for (const folder of folders) {
    const files: string[] = [];
    for (const sub of ['cur', 'new']) {
      const dir = path.join(root, folder, sub);
      if (!fs.existsSync(dir)) continue;
      for (const name of fs.readdirSync(dir)) files.push(`${sub}/${name} ${crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, name))).digest('hex')}`);
    }
    out[folder === '' ? 'INBOX' : folder.slice(1)] = files.sort();
  }
  return out;
}
