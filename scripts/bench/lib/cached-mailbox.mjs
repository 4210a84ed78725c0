// Big generated mailboxes are kept between benchmark runs: the generator is deterministic,
// so a mailbox whose marker names the same options is the same mailbox. Writing 50,000
// maildir files (and Dovecot indexing them) is then paid once, not per run.
import fs from 'node:fs';
import path from 'node:path';
import { addDovecotUsers, dovecotHome, generateMailbox, writeMaildir } from '../generate-mailbox.mjs';

const marker = (home) => path.join(home, '.mailsync-bench.json');

/**
 * Makes sure `user` exists in the instance at `dovecotDir` with the mailbox that `genOpts`
 * describes; returns the generator's summary.
 */
export async function cachedMailbox(dovecotDir, { user, pass, ...genOpts }) {
  const home = dovecotHome(dovecotDir, user);
  const key = JSON.stringify({ v: 1, ...genOpts, end: genOpts.end?.toISOString() ?? null, owner: genOpts.owner ?? null });
  const users = fs.readFileSync(path.join(dovecotDir, 'users'), 'utf8');
  if (!users.split('\n').some((l) => l.startsWith(`${user}:`))) await addDovecotUsers(dovecotDir, [{ user, pass }]);
  try {
    const m = JSON.parse(fs.readFileSync(marker(home), 'utf8'));
    if (m.key === key) return m.summary;
  } catch {
    // no marker: write the mailbox
  }
  fs.rmSync(home, { recursive: true, force: true });
  const { messages, summary } = generateMailbox(genOpts);
  summary.written = writeMaildir(home, messages);
  fs.writeFileSync(marker(home), JSON.stringify({ key, summary }));
  return summary;
}

/** Adds the users of `logins` missing from the instance's passwd file, all in one write. */
export async function ensureUsers(dovecotDir, logins) {
  const have = new Set(fs.readFileSync(path.join(dovecotDir, 'users'), 'utf8').split('\n').map((l) => l.split(':')[0]));
  const missing = logins.filter((l) => !have.has(l.user));
  if (missing.length) await addDovecotUsers(dovecotDir, missing);
}
