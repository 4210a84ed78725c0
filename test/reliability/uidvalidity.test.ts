import path from 'node:path';
import fs from 'node:fs';
import t from 'tap';
import { appendMessage, createMailbox, dovecotEnv } from '../helpers/dovecot.js';
import { startDaemon, startReceiver, waitUntil, WEBHOOK_SECRET, type RunningDaemon } from '../helpers/daemon.js';
import { tempDir } from '../helpers/stack.js';
import { atsOriginal, candidateReply, consentAndGoLive, feedEventsFor, messageIdOf } from '../helpers/recruiter.js';

/**
 * The server renumbers a folder between two sessions (a new UIDVALIDITY, as after a server
 * migration, B34): the stored UIDs mean nothing now. The daemon rebuilds the folder silently
 * from Message-IDs: messages it already has are recognised and not announced again, the one
 * that is new is announced once.
 */

t.setTimeout(120_000);

t.test('a UIDVALIDITY change between sessions is rebuilt without replaying old mail', async (t) => {
  const login = await createMailbox('uidvalidity');
  const env = dovecotEnv();
  const receiver = await startReceiver(t);
  const original = atsOriginal(login.address);
  const first = candidateReply(login.address, original.messageId, 'first');
  await appendMessage(login, 'Sent', original.raw, ['\\Seen']);
  await appendMessage(login, 'INBOX', first.raw);
  const storeDir = path.join(tempDir(t), 'store');
  const overrides = { webhooks: { url: receiver.url, secret: WEBHOOK_SECRET }, sync: { tlsCaFile: env.caFile } };
  let d: RunningDaemon = await startDaemon(t, { storeDir, overrides });
  await consentAndGoLive(d, login, { host: env.host, port: env.port });
  await receiver.waitFor((w) => messageIdOf(w) === first.messageId, 'the first reply');
  const folder = async () => (await d.api<{ folders: Array<{ path: string; uidValidity: string }> }>('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' })).body.folders.find((f) => f.path === 'INBOX')!;
  const before = await folder();
  await d.stop();

  // what a server migration does: Dovecot loses its UID list and index and numbers the
  // folder afresh, with a new UIDVALIDITY
  const maildir = path.join(env.dir, 'mail', login.user, 'Maildir');
  for (const f of fs.readdirSync(maildir)) if (f === 'dovecot-uidlist' || f.startsWith('dovecot.index')) fs.rmSync(path.join(maildir, f));
  const second = candidateReply(login.address, original.messageId, 'second');
  await appendMessage(login, 'INBOX', second.raw);
  const hooksBefore = receiver.ofType('message.created').length;

  d = await startDaemon(t, { storeDir, overrides });
  await receiver.waitFor((w) => messageIdOf(w) === second.messageId, 'the reply that arrived meanwhile');
  const after = await waitUntil(async () => ((await folder()).uidValidity !== before.uidValidity ? folder() : null), 'a new UIDVALIDITY recorded');
  t.not(after.uidValidity, before.uidValidity, `UIDVALIDITY ${before.uidValidity} → ${after.uidValidity}`);
  t.ok(d.logs.some((l) => l.includes('UIDVALIDITY changed')), 'the rebuild was logged');
  t.same(receiver.ofType('message.created').slice(hooksBefore).map(messageIdOf), [second.messageId], 'only the new reply was announced');
  for (const id of [original.messageId, first.messageId, second.messageId]) t.equal((await feedEventsFor(d, id)).length, 1, `${id}: one event in all`);
  const feed = await d.api<{ events: Array<{ type: string; data: { message?: { id: string; messageId: string } } }> }>('GET', '/v1/events?limit=1000');
  const key = feed.body.events.find((e) => e.data.message?.messageId === first.messageId)!.data.message!.id;
  const msg = await d.api<{ seenIn: Array<{ folder: string }> }>('GET', `/v1/messages/${key}`);
  t.same(msg.body.seenIn.map((s) => s.folder), ['INBOX'], 'the stored reply is still known where it sits');
});
