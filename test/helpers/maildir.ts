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
