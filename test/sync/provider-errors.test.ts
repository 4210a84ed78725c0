import t, { type Test } from 'tap';
import { startDaemon, waitUntil, type RunningDaemon } from '../helpers/daemon.js';
import { FakeImapServer, type FakeServerOptions } from '../fakes/imap-server.js';
import { classifyError } from '../../daemon/sync/error-classifier.js';

/**
 * Provider refusals become mailbox states, not loops. Dovecot cannot say what Gmail and
 * Microsoft 365 say, so a scripted fake IMAP server (test/fakes/imap-server.ts) speaks each
 * reply from the public reports (corpus/cases B36, B37, B39); the daemon is the real one.
 */

interface Status { state: string; lastError: { code: string; message: string } | null }

async function consentTo(t: Test, opts: FakeServerOptions, overrides: Record<string, unknown> = {}) {
  const fake = await new FakeImapServer(opts).start(t);
  const d = await startDaemon(t, { overrides });
  await d.api('PUT', '/v1/users/u1', { body: { email: 'robin@example.com' } });
  const res = await d.api('PUT', '/v1/users/u1/mailbox', {
    actingUser: 'u1',
    body: { imap: { host: '127.0.0.1', port: fake.port, secure: false, auth: { user: 'robin@example.com', pass: 'app-password' } }, syncSince: '2020-01-01T00:00:00Z' },
  });
  t.equal(res.status, 202);
  return { fake, d };
}

async function stateOf(d: RunningDaemon, state: string): Promise<Status> {
  return waitUntil(async () => {
    const s = (await d.api<Status>('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' })).body;
    return s.state === state ? s : null;
  }, `state ${state}`);
}

/** The delays the worker chose before reconnecting, from its log. */
function retryDelays(d: RunningDaemon): number[] {
  return d.logs.map((l) => JSON.parse(l) as { msg: string; delayMs?: number }).filter((l) => l.msg === 'waiting before reconnecting').map((l) => l.delayMs!);
}

async function stateEvents(d: RunningDaemon): Promise<Array<{ state: string; error: { code: string } | null }>> {
  const events = (await d.api<{ events: Array<{ type: string; data: { state: string; error: { code: string } | null } }> }>('GET', '/v1/events?limit=1000')).body.events;
  return events.filter((e) => e.type === 'mailbox.state_changed').map((e) => e.data);
}

t.test('IMAP turned off for the account: imap_disabled with guidance for the admin', async (t) => {
  const { fake, d } = await consentTo(t, {
    gmail: true,
    script: ({ tag, command }) => (command === 'AUTHENTICATE' ? [`${tag} NO [ALERT] Your account is not enabled for IMAP use. Please visit your Gmail settings page and enable your account for IMAP access. (Failure)`] : undefined),
  });
  const s = await stateOf(d, 'imap_disabled');
  t.equal(s.lastError!.code, 'imap_disabled');
  t.match(s.lastError!.message, /administrator must allow IMAP/);
  t.match(s.lastError!.message, /Google Workspace/);
  await waitUntil(() => retryDelays(d).length > 0, 'the retry decision');
  t.ok(retryDelays(d)[0]! >= 3_600_000, 'the next attempt is an hour away, not a loop');
  t.equal(fake.connections, 1, 'one connection attempt');
});

t.test('"Too many simultaneous connections": throttled, backs off, never a second connection', async (t) => {
  const { fake, d } = await consentTo(t, {
    gmail: true,
    script: ({ tag, command }) => (command === 'AUTHENTICATE' ? [`${tag} NO [ALERT] Too many simultaneous connections. (Failure)`] : undefined),
  });
  const s = await stateOf(d, 'throttled');
  t.equal(s.lastError!.code, 'too_many_connections', 'not auth_failed: the credentials are fine');
  t.match(s.lastError!.message, /other mail apps and devices/);
  await waitUntil(() => retryDelays(d).length > 0, 'the retry decision');
  t.ok(retryDelays(d)[0]! >= 60_000, `waits at least a minute (${retryDelays(d)[0]} ms)`);
  t.equal(fake.connections, 1);
});

t.test('Microsoft 365 "authenticated but not connected": throttled for minutes, not auth_failed', async (t) => {
  const { fake, d } = await consentTo(t, {
    script: ({ tag, command }) => (command === 'EXAMINE' || command === 'SELECT' ? [`${tag} BAD User is authenticated but not connected.`, '* BYE Connection closed. 14'] : undefined),
  });
  const s = await stateOf(d, 'throttled');
  t.equal(s.lastError!.code, 'throttled');
  t.match(s.lastError!.message, /authenticated but not connected/);
  await waitUntil(() => retryDelays(d).length > 0, 'the retry decision');
  t.ok(retryDelays(d)[0]! >= 300_000, `waits at least five minutes (${retryDelays(d)[0]} ms)`);
  t.equal(fake.connections, 1);
});

t.test('Microsoft 365 throttling with a suggested backoff (then BYE): the suggestion is honoured', async (t) => {
  const { fake, d } = await consentTo(t, {
    script: ({ tag, command }) => (command === 'UID FETCH' ? [`${tag} BAD Request is throttled. Suggested Backoff Time: 299961 milliseconds`, '* BYE Connection closed.'] : undefined),
  });
  fake.add(['INBOX'], 'From: a@example.org\r\nTo: robin@example.com\r\nSubject: hi\r\nMessage-ID: <t1@example.org>\r\n\r\nbody\r\n');
  const s = await stateOf(d, 'throttled');
  t.equal(s.lastError!.code, 'throttled');
  t.match(s.lastError!.message, /pause of 300 s/);
  await waitUntil(() => retryDelays(d).length > 0, 'the retry decision');
  t.ok(retryDelays(d)[0]! >= 299_961, `waits the suggested 299961 ms (${retryDelays(d)[0]} ms)`);
  t.equal(fake.connections, 1);
});

t.test('[AUTHENTICATIONFAILED]: auth_failed, one event', async (t) => {
  const { d } = await consentTo(t, {
    script: ({ tag, command }) => (command === 'AUTHENTICATE' ? [`${tag} NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)`] : undefined),
  });
  const s = await stateOf(d, 'auth_failed');
  t.equal(s.lastError!.code, 'auth_failed');
  t.match(s.lastError!.message, /grant access again/);
  t.same((await stateEvents(d)).map((e) => e.state), ['auth_failed']);
});

t.test('BYE as the greeting: unreachable and retried; repeated failures make one event', async (t) => {
  const { fake, d } = await consentTo(t, { greeting: '* BYE Server busy, try later' });
  const s = await stateOf(d, 'unreachable');
  t.equal(s.lastError!.code, 'server_busy');
  await waitUntil(() => fake.connections >= 4, 'several attempts (short backoff)');
  const events = await stateEvents(d);
  t.same(events.map((e) => [e.state, e.error?.code]), [['unreachable', 'server_busy']], 'one mailbox.state_changed for four failures');
});

t.test('sync.maxConnectionsPerUser holds while consents are replaced', async (t) => {
  const { fake, d } = await consentTo(t, {});
  await stateOf(d, 'live');
  for (let i = 0; i < 3; i++) {
    await d.api('PUT', '/v1/users/u1/mailbox', {
      actingUser: 'u1',
      body: { imap: { host: '127.0.0.1', port: fake.port, secure: false, auth: { user: 'robin@example.com', pass: `pw-${i}` } } },
    });
  }
  await stateOf(d, 'live');
  await waitUntil(() => fake.connections >= 4, 'a connection per consent');
  t.equal(fake.peakAuthenticated, 1, 'never two sessions at once (default 1)');
  t.equal(d.daemon.parts.supervisor.size, 1);
});

t.test('TLS and DNS failures: unreachable with the reason', async (t) => {
  const { d } = await consentTo(t, {});
  // a TLS client against a server that speaks plain IMAP
  await d.api('PUT', '/v1/users/u1/mailbox', {
    actingUser: 'u1',
    body: { imap: { host: '127.0.0.1', port: (await new FakeImapServer().start(t)).port, secure: true, auth: { user: 'robin@example.com', pass: 'x' } } },
  });
  const s = await stateOf(d, 'unreachable');
  t.equal(s.lastError!.code, 'tls_failed');
  t.match(s.lastError!.message, /secure connection/);
  const dns = classifyError(Object.assign(new Error('getaddrinfo ENOTFOUND imap.nowhere.example'), { code: 'ENOTFOUND' }));
  t.same([dns.state, dns.code], ['unreachable', 'dns_failed']);
  t.match(dns.message, /does not resolve/);
});
