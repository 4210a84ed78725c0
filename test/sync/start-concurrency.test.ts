import t from 'tap';
import { createMailbox, dovecotEnv } from '../helpers/dovecot.js';
import { startDaemon, startReceiver, waitUntil, WEBHOOK_SECRET } from '../helpers/daemon.js';
import { recruiterWithThread } from '../helpers/recruiter.js';

/**
 * sync.startConcurrency: mailboxes connect and catch up a few at a time. With one at a time,
 * the change feed shows each mailbox's catch-up (initial_sync → live) ending before the next
 * one's begins, every mailbox gets its turn, and one that cannot log in gives its place back
 * instead of holding up the others.
 */

interface StateEvent { type: string; data: { userId: string; state: string } }

t.test('with sync.startConcurrency 1, mailboxes catch up one after another and a failing one does not block the rest', async (t) => {
  const env = dovecotEnv();
  const wrong = await createMailbox('start-bad');
  const good = await Promise.all(['start-a', 'start-b', 'start-c'].map((p) => recruiterWithThread(p)));
  const receiver = await startReceiver(t);
  const d = await startDaemon(t, { overrides: { webhooks: { url: receiver.url, secret: WEBHOOK_SECRET }, sync: { tlsCaFile: env.caFile, startConcurrency: 1 } } });
  const mailboxes = [{ id: 'u-bad', login: { ...wrong, pass: 'not-the-password' } }, ...good.map((g, i) => ({ id: `u-good${i}`, login: g.login }))];
  for (const m of mailboxes) {
    t.equal((await d.api('PUT', `/v1/users/${m.id}`, { body: { email: m.login.address, name: m.id } })).status, 200);
    const consent = await d.api('PUT', `/v1/users/${m.id}/mailbox`, {
      actingUser: m.id,
      body: { imap: { host: env.host, port: env.port, secure: false, auth: { user: m.login.user, pass: m.login.pass } }, syncSince: '2020-01-01T00:00:00Z' },
    });
    t.equal(consent.status, 202, `consent of ${m.id}`);
  }
  const states = async () => (await d.api<{ events: StateEvent[] }>('GET', '/v1/events?after=0&limit=1000')).body.events.filter((e) => e.type === 'mailbox.state_changed');
  const feed = await waitUntil(async () => {
    const events = await states();
    return good.every((_, i) => events.some((e) => e.data.userId === `u-good${i}` && e.data.state === 'live')) ? events : null;
  }, 'every good mailbox live', 60_000, 100);
  t.ok(feed.some((e) => e.data.userId === 'u-bad' && e.data.state === 'auth_failed'), 'the mailbox with the wrong password is auth_failed');
  // each good mailbox's catch-up is one interval of the feed; with one place they never overlap
  const spans = good.map((_, i) => {
    const at = (state: string) => feed.findIndex((e) => e.data.userId === `u-good${i}` && e.data.state === state);
    return { user: `u-good${i}`, from: at('initial_sync'), to: at('live') };
  });
  for (const s of spans) t.ok(s.from >= 0 && s.to > s.from, `${s.user}: initial_sync, then live`);
  spans.sort((a, b) => a.from - b.from);
  for (let i = 1; i < spans.length; i++) t.ok(spans[i]!.from > spans[i - 1]!.to, `${spans[i]!.user} began its catch-up after ${spans[i - 1]!.user} was live`);
});
