import path from 'node:path';
import t from 'tap';
import { startDaemon, startReceiver, waitUntil, WEBHOOK_SECRET, TOKEN } from '../helpers/daemon.js';
import { tempDir } from '../helpers/stack.js';
import { ATS_LOGIN, atsClient, startSink } from '../helpers/smtp.js';
import { freePort, startChildDaemon } from '../helpers/child-daemon.js';

/**
 * Delivery when things go wrong: the provider down and back, deferring and refusing, retries
 * running out, and the daemon killed with messages queued or in flight. The sink counts what
 * it accepted: every message exactly once.
 */

const CANDIDATE = 'riley.candidate@example.org';
const FAST = [0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2];

const queuedId = (response: string) => /(<[^>]+>)$/.exec(response.trim())![1]!;

t.test('provider down, then up: each message is delivered once after recovery', async (t) => {
  const sink = await startSink(t);
  await sink.close(); // the provider is down
  const receiver = await startReceiver(t);
  const d = await startDaemon(t, {
    smtp: true,
    overrides: {
      webhooks: { url: receiver.url, secret: WEBHOOK_SECRET },
      smtp: { submission: { users: [ATS_LOGIN] }, relay: { allowPlaintext: true, retryDelaysSeconds: FAST, smarthost: { host: '127.0.0.1', port: sink.port } } },
    },
  });
  await d.api('PUT', '/v1/users/u1', { body: { email: 'robin@example.com' } });
  const ats = atsClient(d.daemon.parts.relay.ports.submission);
  t.teardown(() => ats.close());
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push(queuedId((await ats.sendMail({ from: 'robin@example.com', to: CANDIDATE, subject: `Update ${i}`, text: `Update number ${i}.` })).response));
  await waitUntil(async () => /mailsync_relay_messages_total\{outcome="deferred"\} ([3-9]|\d\d)/.test(await (await fetch(`${d.daemon.apiUrl}/metrics`)).text()), 'every message deferred at least once');
  t.equal(d.daemon.parts.relay.queue.depth, 3, 'all three wait in the queue');
  const entry = (await d.daemon.parts.relay.records.list())[0]!;
  t.match(entry.lastError, /ECONNREFUSED|ESOCKET|ECONNECTION/, 'the reason is recorded');

  await sink.listen(); // back up
  await waitUntil(() => receiver.ofType('message.sent').length === 3, 'three message.sent events');
  await waitUntil(() => d.daemon.parts.relay.queue.depth === 0, 'the queue empty');
  t.same(sink.messageIds().sort(), [...ids].sort(), 'each delivered exactly once');
  t.equal(await d.daemon.parts.relay.records.count(), 0, 'nothing left in the store: nothing more can be sent');
});

t.test('a deferring provider is retried; a refusing one fails the message with the reason', async (t) => {
  let deferOnce = new Set<string>();
  const sink = await startSink(t, {
    onRcpt: (rcpt) => (rcpt.startsWith('gone') ? [550, '5.1.1 <gone@example.org>: no such user'] : null),
    onData: (msg) => {
      const id = msg.raw.toString('latin1').match(/^message-id:\s*(\S+)/im)?.[1] ?? '';
      if (/Greylist me/.test(msg.raw.toString()) && !deferOnce.has(id)) {
        deferOnce = new Set([...deferOnce, id]);
        return [451, '4.7.1 Greylisted, please try again'];
      }
      return null;
    },
  });
  const receiver = await startReceiver(t);
  const d = await startDaemon(t, {
    smtp: true,
    overrides: {
      webhooks: { url: receiver.url, secret: WEBHOOK_SECRET },
      smtp: { submission: { users: [ATS_LOGIN] }, relay: { allowPlaintext: true, retryDelaysSeconds: FAST, smarthost: { host: '127.0.0.1', port: sink.port } } },
    },
  });
  await d.api('PUT', '/v1/users/u1', { body: { email: 'robin@example.com' } });
  const ats = atsClient(d.daemon.parts.relay.ports.submission);
  t.teardown(() => ats.close());

  const grey = queuedId((await ats.sendMail({ from: 'robin@example.com', to: CANDIDATE, subject: 'Greylist me', text: 'Greylist me' })).response);
  const sentGrey = await receiver.waitFor((w) => w.body.type === 'message.sent' && w.body.data.messageId === grey, 'the greylisted message sent on retry');
  t.equal(sink.messageIds().filter((id) => id === grey).length, 1, 'delivered once');
  t.equal(sentGrey.body.data.error, null);

  const mixed = queuedId((await ats.sendMail({ from: 'robin@example.com', to: [CANDIDATE, 'gone@example.org'], subject: 'Two recipients', text: 'One of you is gone.' })).response);
  const failed = await receiver.waitFor((w) => w.body.type === 'message.failed' && w.body.data.messageId === mixed, 'message.failed for the refused recipient');
  const data = failed.body.data as { accepted: string[]; rejected: Array<{ recipient: string; error: string }>; error: string; threadId: string };
  t.same(data.accepted, [CANDIDATE], 'delivered to the recipient who exists');
  t.same(data.rejected.map((r) => r.recipient), ['gone@example.org']);
  t.match(data.error, /550 5\.1\.1/, 'the provider\'s own words');
  t.equal(sink.messageIds().filter((id) => id === mixed).length, 1, 'sent once, to the good recipient only');
  t.same(sink.messages.find((m) => m.raw.includes(mixed))!.to, [CANDIDATE]);

  const allGone = queuedId((await ats.sendMail({ from: 'robin@example.com', to: 'gone@example.org', subject: 'Nobody', text: 'Nobody home.' })).response);
  const failedAll = await receiver.waitFor((w) => w.body.type === 'message.failed' && w.body.data.messageId === allGone, 'message.failed at once for a 5xx');
  t.same((failedAll.body.data as { accepted: string[] }).accepted, []);
  t.equal((await d.api<{ messages: unknown[] }>('GET', `/v1/threads/${(failedAll.body.data as { threadId: string }).threadId}`)).body.messages.length, 0, 'a message that reached nobody is not stored as sent');
  t.equal(d.daemon.parts.relay.queue.depth, 0);
});

t.test('retries run out: message.failed says so', async (t) => {
  const sink = await startSink(t);
  await sink.close();
  const receiver = await startReceiver(t);
  const d = await startDaemon(t, {
    smtp: true,
    overrides: {
      webhooks: { url: receiver.url, secret: WEBHOOK_SECRET },
      smtp: { submission: { users: [ATS_LOGIN] }, relay: { allowPlaintext: true, retryDelaysSeconds: [0.1, 0.1], smarthost: { host: '127.0.0.1', port: sink.port } } },
    },
  });
  await d.api('PUT', '/v1/users/u1', { body: { email: 'robin@example.com' } });
  const ats = atsClient(d.daemon.parts.relay.ports.submission);
  t.teardown(() => ats.close());
  await ats.sendMail({ from: 'robin@example.com', to: CANDIDATE, subject: 'Never', text: 'Never arrives.' });
  const failed = await receiver.waitFor((w) => w.body.type === 'message.failed', 'message.failed');
  t.match(failed.body.data.error, /^gave up after 3 attempts: /);
  t.equal(d.daemon.parts.relay.queue.depth, 0);
});

t.test('SIGKILL with messages queued and one in the provider\'s hands: after restart each is delivered exactly once', async (t) => {
  let stalled = false;
  const sink = await startSink(t, { stall: () => stalled });
  await sink.close();
  const dir = tempDir(t);
  const [apiPort, submissionPort] = [await freePort(), await freePort()];
  const config = {
    api: { host: '127.0.0.1', port: apiPort, tokens: [TOKEN] },
    store: { path: path.join(dir, 'store'), keyFile: path.join(dir, 'master.key') },
    smtp: {
      submission: { port: submissionPort, users: [ATS_LOGIN] }, intake: { port: 0 },
      relay: { allowPlaintext: true, retryDelaysSeconds: FAST, smarthost: { host: '127.0.0.1', port: sink.port } },
    },
    log: { level: 'info' },
  };
  let child = await startChildDaemon(t, dir, config);
  const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
  t.equal((await fetch(`${child.api}/v1/users/u1`, { method: 'PUT', headers, body: JSON.stringify({ email: 'robin@example.com' }) })).status, 200);

  const ats = atsClient(submissionPort);
  t.teardown(() => ats.close());
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push(queuedId((await ats.sendMail({ from: 'robin@example.com', to: CANDIDATE, subject: `Queued ${i}`, text: `Message ${i}.` })).response));
  await waitUntil(async () => /mailsync_relay_messages_total\{outcome="deferred"\} ([5-9]|\d\d)/.test(await (await fetch(`${child.api}/metrics`)).text()), 'all five deferred (provider down)');

  // the provider comes back but stalls: messages reach it and get no answer
  stalled = true;
  await sink.listen();
  await waitUntil(() => sink.stalled >= 1, 'a message in the provider\'s hands, unanswered');
  t.match(await (await fetch(`${child.api}/metrics`)).text(), /mailsync_relay_queue_depth 5/, 'all five still queued');
  child.process.kill('SIGKILL');
  await child.exited;
  t.equal(sink.messages.length, 0, 'nothing was accepted before the kill');

  stalled = false;
  child = await startChildDaemon(t, dir, config);
  await waitUntil(() => sink.messages.length >= 5, 'the five delivered after the restart', 30_000);
  t.ok(child.logs.some((l) => /cut off by a crash: sending again/.test(l)), 'the sends the kill cut off are known as such and sent again');
  await waitUntil(async () => /mailsync_relay_queue_depth 0/.test(await (await fetch(`${child.api}/metrics`)).text()), 'the queue empty');
  const events = await (await fetch(`${child.api}/v1/events?limit=100`, { headers })).json() as { events: Array<{ type: string; data: { messageId: string } }> };
  t.same(events.events.filter((e) => e.type === 'message.sent').map((e) => e.data.messageId).sort(), [...ids].sort(), 'one message.sent each');
  t.same(sink.messageIds().sort(), [...ids].sort(), 'the sink counted each exactly once');
});
