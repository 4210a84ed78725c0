import crypto from 'node:crypto';
import t from 'tap';
import { startDaemon, startReceiver, waitUntil, WEBHOOK_SECRET } from '../helpers/daemon.js';
import { ATS_LOGIN, atsClient, startSink } from '../helpers/smtp.js';
import { findAnyCaseInStoreFiles, foundAnywhere } from '../helpers/store-files.js';

/**
 * A message the relay still holds for a candidate who is then erased: the provider keeps
 * deferring it, the candidate is erased between two attempts (or during one), and the message
 * is never sent afterwards, no outcome event names its recipient, and nothing of it is left in
 * the store's files. Real parts: nodemailer as the ATS, the submission listener, a smtp-server
 * sink as the organisation's smarthost.
 */

const letters = (n: number) => Array.from(crypto.randomBytes(n), (b) => String.fromCharCode(97 + (b % 26))).join('');

t.test('a relay message queued for an erased candidate is not sent, and nothing of it is kept', async (t) => {
  let deferring = true;
  let deferred = 0;
  const sink = await startSink(t, {
    onData: () => {
      if (!deferring) return null;
      deferred++;
      return [451, '4.7.1 Try again later'];
    },
  });
  const receiver = await startReceiver(t);
  const d = await startDaemon(t, {
    smtp: true,
    overrides: {
      webhooks: { url: receiver.url, secret: WEBHOOK_SECRET },
      store: { encryptContent: false },
      // retried every 0.1 s for long enough: attempts are in flight as often as they wait
      smtp: { submission: { users: [ATS_LOGIN] }, relay: { allowPlaintext: true, retryDelaysSeconds: Array(300).fill(0.1), smarthost: { host: '127.0.0.1', port: sink.port } } },
    },
  });
  const token = letters(16);
  const jo = `jo.${token}@example.org`;
  const marker = `marker ${letters(24)}`;
  await d.api('PUT', '/v1/users/u1', { body: { email: 'robin@example.com' } });
  await d.api('PUT', '/v1/candidates/cE', { body: { emails: [jo] } });
  await d.api('PUT', '/v1/candidates/cS', { body: { emails: ['sam@example.org'] } });
  const ats = atsClient(d.daemon.parts.relay.ports.submission);
  t.teardown(() => ats.close());

  const info = await ats.sendMail({ from: 'robin@example.com', to: jo, subject: 'Offer', text: `Dear Jo, ${marker}`, headers: { 'X-Mailsync-Candidate': 'cE' } });
  const queueId = /queued as (q_[0-9a-z]+)/.exec(info.response)![1]!;
  await waitUntil(() => deferred >= 3, 'the provider to defer the message a few times');
  t.ok(foundAnywhere(findAnyCaseInStoreFiles(d.storeDir, { token, marker })).length, 'the queued message is in the store');

  t.equal((await d.api('DELETE', '/v1/candidates/cE')).status, 204);
  t.equal(await d.daemon.parts.relay.records.count(), 0, 'the queue entry is gone from the store');
  deferring = false;
  // a message for another candidate goes out now: the queue runs, and would have sent Jo's too
  await ats.sendMail({ from: 'robin@example.com', to: 'sam@example.org', subject: 'Hello', text: 'Hello Sam', headers: { 'X-Mailsync-Candidate': 'cS' } });
  await receiver.waitFor((w) => w.body.type === 'message.sent' && (w.body.data.accepted as string[]).includes('sam@example.org'), 'Sam\'s message sent');
  await waitUntil(() => d.daemon.parts.relay.queue.depth === 0, 'the queue to be empty');
  t.same(sink.messages.map((m) => m.to), [['sam@example.org']], 'only Sam\'s message reached the provider');
  t.notOk(receiver.received.some((w) => w.body.data.queueId === queueId), 'no outcome event for the erased message (it would name its thread and recipients)');
  const feed = await d.api<{ events: Array<{ data: Record<string, unknown> }> }>('GET', '/v1/events?limit=1000');
  t.notOk(feed.body.events.some((e) => e.data.queueId === queueId), 'nor in the change feed');
  t.notMatch(JSON.stringify(feed.body).toLowerCase(), token, 'which holds nothing of the address');
  t.same(foundAnywhere(findAnyCaseInStoreFiles(d.storeDir, { token, marker })), [], 'no file of the store holds the address or the text');
});
