import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { startDaemon, startReceiver, waitUntil, WEBHOOK_SECRET } from '../helpers/daemon.js';
import { startPrivateDovecot } from '../helpers/private-dovecot.js';
import { deliverToMaildir } from '../helpers/maildir.js';
import { atsOriginal, candidateReply, consentAndGoLive, feedEventsFor, mailboxState, messageIdOf } from '../helpers/recruiter.js';

/**
 * The IMAP server restarts under a live daemon (a Dovecot of this test's own, so the shared
 * one stays up for the other tests). Mail the MTA delivers while the server is down arrives
 * within 30 s of the server being back, exactly once, and the daemon logs in to the new
 * server.
 */

t.setTimeout(180_000);

/** Logins of `user` since Dovecot last started, from its log. */
function loginsSinceStart(log: string, user: string): number {
  const text = fs.readFileSync(log, 'utf8');
  const start = text.lastIndexOf(' starting up for imap');
  return text.slice(start).split('\n').filter((l) => l.includes(`Login: user=<${user}>`)).length;
}

t.test('Dovecot restarts while the daemon is live', async (t) => {
  const dovecot = await startPrivateDovecot(t);
  const login = await dovecot.addUser('restart');
  const server = { host: dovecot.host, port: dovecot.port };
  const receiver = await startReceiver(t);
  const original = atsOriginal(login.address);
  const appendPrivate = (folder: string, raw: string, flags: string[] = []) => dovecot.append(login, folder, raw, flags);
  await appendPrivate('Sent', original.raw, ['\\Seen']);
  const d = await startDaemon(t, {
    overrides: {
      webhooks: { url: receiver.url, secret: WEBHOOK_SECRET },
      sync: { tlsCaFile: path.join(dovecot.dir, 'cert.pem'), connectTimeoutSeconds: 3, socketTimeoutSeconds: 10, backoff: { minMs: 200, maxMs: 3_000, resetAfterSeconds: 10 } },
    },
  });
  await consentAndGoLive(d, login, server);
  const first = candidateReply(login.address, original.messageId, 'before');
  await appendPrivate('INBOX', first.raw);
  await receiver.waitFor((w) => messageIdOf(w) === first.messageId, 'the reply before the restart');

  for (const round of [1, 2]) {
    await t.test(`restart ${round}: mail delivered while Dovecot was down arrives once`, async (t) => {
      const logsBefore = d.logs.length;
      await dovecot.stop();
      await waitUntil(() => d.logs.some((l, i) => i >= logsBefore && l.includes('connection dropped; reconnecting')), 'the daemon to notice the server went away');
      const whileDown = candidateReply(login.address, original.messageId, `down-${round}`);
      deliverToMaildir(path.join(dovecot.dir, 'mail'), login.user, 'INBOX', whileDown.raw);
      t.ok(fs.existsSync(path.join(dovecot.dir, 'mail', login.user, 'Maildir', 'new')), 'delivered by the MTA into the Maildir');
      await dovecot.start();
      const upAt = Date.now();
      const hook = await receiver.waitFor((w) => messageIdOf(w) === whileDown.messageId, 'the reply delivered during the restart', 30_000);
      t.ok(hook.at - upAt < 30_000, `arrived ${hook.at - upAt} ms after Dovecot was back`);
      const after = candidateReply(login.address, original.messageId, `after-${round}`);
      await appendPrivate('INBOX', after.raw);
      await receiver.waitFor((w) => messageIdOf(w) === after.messageId, 'a reply appended after the restart');
      for (const id of [whileDown.messageId, after.messageId]) {
        t.equal(receiver.received.filter((w) => messageIdOf(w) === id).length, 1, `${id}: one webhook`);
        t.same((await feedEventsFor(d, id)).length, 1, `${id}: one event`);
      }
      t.ok(loginsSinceStart(dovecot.log, login.user) >= 1, 'the daemon logged in to the restarted server');
      await waitUntil(async () => (await mailboxState(d)) === 'live', 'live again');
    });
  }

  await t.test('nothing stored before the restarts was announced again', async (t) => {
    const ids = receiver.ofType('message.created').map(messageIdOf);
    t.equal(new Set(ids).size, ids.length, `${ids.length} message webhooks, all distinct`);
    t.equal((await feedEventsFor(d, original.messageId)).length, 1, 'the original: one event');
    t.equal((await feedEventsFor(d, first.messageId)).length, 1, 'the first reply: one event');
  });
});
