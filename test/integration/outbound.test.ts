import t from 'tap';
import { appendMessage, buildMessage, createMailbox, dovecotEnv } from '../helpers/dovecot.js';
import { startDaemon, startReceiver, waitUntil, WEBHOOK_SECRET } from '../helpers/daemon.js';

/**
 * An ATS that sends mail itself (not through the relay, not in its own Message-ID domain)
 * declares the Message-ID with POST /v1/outbound; the candidate's reply in the recruiter's
 * real Dovecot mailbox is then tracked. The change feed pages through the same events.
 */

t.test('declared outbound mail: the reply is tracked and the change feed pages through it', async (t) => {
  const login = await createMailbox('outbound');
  const env = dovecotEnv();
  const receiver = await startReceiver(t);
  const d = await startDaemon(t, { overrides: { webhooks: { url: receiver.url, secret: WEBHOOK_SECRET }, sync: { tlsCaFile: env.caFile } } });
  const candidate = 'sam.applicant@example.org';
  const declaredId = '<CAF3x9q.9911@mail.example.com>';

  t.equal((await d.api('PUT', '/v1/users/u7', { body: { email: login.address } })).status, 200);
  t.equal((await d.api('PUT', '/v1/candidates/c7', { body: { emails: [candidate] } })).status, 200);
  const notRegistered = await d.api<{ error: { code: string } }>('POST', '/v1/outbound', { body: { userId: 'nobody', messageId: declaredId, candidateIds: ['c7'] } });
  t.equal(notRegistered.status, 404, 'declaring for an unknown user is 404');

  const declared = await d.api<{ id: string; origin: string; candidateIds: string[]; ownerUserIds: string[]; messageCount: number }>('POST', '/v1/outbound', {
    body: { userId: 'u7', messageId: declaredId, candidateIds: ['c7'] },
  });
  t.equal(declared.status, 201);
  t.same([declared.body.origin, declared.body.candidateIds, declared.body.ownerUserIds, declared.body.messageCount], ['ats', ['c7'], ['u7'], 0], 'a thread exists before any mail');
  const again = await d.api<{ id: string }>('POST', '/v1/outbound', { body: { userId: 'u7', messageId: declaredId.toUpperCase().replace('MAIL.EXAMPLE.COM', 'mail.example.com'), candidateIds: ['c7'] } });
  t.ok(again.status === 201, 'declaring again is accepted');

  await d.api('PUT', '/v1/users/u7/mailbox', { actingUser: 'u7', body: { imap: { host: env.host, port: env.port, secure: false, auth: { user: login.user, pass: login.pass } } } });
  await waitUntil(async () => (await d.api<{ state: string }>('GET', '/v1/users/u7/mailbox', { actingUser: 'u7' })).body.state === 'live', 'live');

  // a look-alike reply to a different, undeclared id in the same domain is not tracked
  await appendMessage(login, 'INBOX', buildMessage({ from: candidate, to: login.address, subject: 'Re: Your application', inReplyTo: '<other.1@mail.example.com>', text: 'not this one' }));
  await appendMessage(login, 'INBOX', buildMessage({ from: `Sam Applicant <${candidate}>`, to: login.address, subject: 'Re: Your application', messageId: '<r1@example.org>', inReplyTo: declaredId, references: declaredId, text: 'Thanks, see you Monday.' }));
  const hook = await receiver.waitFor((w) => w.body.type === 'message.created', 'the reply webhook');
  const data = hook.body.data as { threadId: string; candidateIds: string[]; message: { messageId: string; inReplyTo: string } };
  t.equal(data.threadId, declared.body.id, 'the reply joined the declared thread');
  t.same(data.candidateIds, ['c7']);
  t.equal(data.message.inReplyTo, declaredId);
  const thread = await d.api<{ messageCount: number; messages: Array<{ text: string }> }>('GET', `/v1/threads/${declared.body.id}`);
  t.equal(thread.body.messageCount, 1, 'only the real reply is in the thread');
  t.match(thread.body.messages[0]!.text, /see you Monday/);

  // the change feed: the same events, in commit order, one page at a time
  const all = (await d.api<{ events: Array<{ id: string }> }>('GET', '/v1/events?limit=1000')).body.events.map((e) => e.id);
  t.ok(all.length >= 3, 'thread.linked, state changes and message.created are in the feed');
  const paged: string[] = [];
  let cursor = '';
  for (let i = 0; i < all.length + 2; i++) {
    const page = await d.api<{ events: Array<{ id: string }>; nextCursor: string }>('GET', `/v1/events?limit=2${cursor ? `&after=${cursor}` : ''}`);
    t.equal(page.status, 200);
    paged.push(...page.body.events.map((e) => e.id));
    if (page.body.events.length === 0) {
      t.equal(page.body.nextCursor, cursor, 'at the end the cursor stays where it was, ready for the next poll');
      break;
    }
    cursor = page.body.nextCursor;
  }
  t.same(paged, all, 'paging with the cursor yields every event once, in order');
  const bad = await d.api<{ error: { code: string } }>('GET', '/v1/events?limit=0');
  t.equal(bad.status, 400, 'limit out of range is a 400');
  t.equal(bad.body.error.code, 'invalid_request');
});
