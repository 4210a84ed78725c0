import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { appendMessage, buildMessage, connectedClients, createMailbox, dovecotEnv, startPrivateDovecot, type Account, type DovecotEnv } from '../helpers/dovecot.js';
import { startDaemon, waitUntil, type RunningDaemon } from '../helpers/daemon.js';
import { ATS_LOGIN, atsClient, startSink } from '../helpers/smtp.js';
import { findInStoreFiles, foundAnywhere } from '../helpers/store-files.js';
import { tempDir } from '../helpers/stack.js';
import { FakeOAuth2Provider } from '../fakes/oauth2-provider.js';

/**
 * Revoking a consent against the real Dovecot: how long until the IMAP connection is gone
 * (measured with `doveadm who`), whether any byte of the credentials (plain or sealed) is
 * left in any file of the store, and whether the mailbox is ever opened again — after a
 * restart, or on an import or link request — until a new consent.
 */

const CANDIDATE = 'dana.candidate@example.org';

interface Ev { type: string; data: Record<string, unknown> }

/** The consent record's sealed credentials, read raw from the store: the base64 text and its bytes. */
function sealedCredentials(d: RunningDaemon, userId: string): { text: string; bytes: Buffer } {
  const raw = d.daemon.parts.store.db.getSync(`mbx!${userId}`);
  if (!raw) throw new Error(`no consent record for ${userId}`);
  const text = (JSON.parse(raw.subarray(1).toString('utf8')) as { sealedCredentials: string }).sealedCredentials;
  return { text, bytes: Buffer.from(text, 'base64') };
}

/** Dovecot's log from this offset on: every IMAP login or login attempt of `user`. */
function loginLines(env: DovecotEnv, user: string, from: number): string[] {
  return fs.readFileSync(env.log, 'utf8').slice(from).split('\n').filter((l) => l.includes('imap-login') && l.includes(`user=<${user}>`));
}

/**
 * DELETE the consent while polling `doveadm who`; returns the seconds from sending the request
 * to the connection being gone, and the response.
 */
async function revokeAndMeasure(t: Test, d: RunningDaemon, userId: string, login: Account, env: DovecotEnv, query = ''): Promise<number> {
  t.equal(await connectedClients(login.user, env), 1, 'one IMAP connection before the revocation');
  const started = performance.now();
  const response = d.api('DELETE', `/v1/users/${userId}/mailbox${query}`, { actingUser: userId });
  let goneAt = 0;
  await waitUntil(async () => {
    if ((await connectedClients(login.user, env)) > 0) return false;
    goneAt = performance.now();
    return true;
  }, 'the IMAP connection to be gone', 10_000, 10);
  const seconds = (goneAt - started) / 1000;
  t.equal((await response).status, 204, 'revoked');
  console.log(`# revocation of ${userId}: IMAP connection gone after ${seconds.toFixed(3)} s (doveadm who)`);
  t.ok(seconds < 5, `the IMAP connection closed within 5 s (${seconds.toFixed(3)} s)`);
  return seconds;
}

async function events(d: RunningDaemon): Promise<Ev[]> {
  return (await d.api<{ events: Ev[] }>('GET', '/v1/events?limit=1000')).body.events;
}

t.test('a password consent: disconnected within 5 s, no credential byte left on disk, never opened again', async (t) => {
  const env = dovecotEnv();
  const login = await createMailbox('revoke');
  const other = await createMailbox('stays');
  const smtpPass = `smtp-${crypto.randomBytes(12).toString('hex')}`;
  let deferrals = 0;
  // the provider defers every message: one waits in the relay queue for its retry
  const sink = await startSink(t, { auth: { user: login.user, pass: smtpPass }, onData: () => (deferrals++, [451, '4.3.0 Try again later']) });
  await appendMessage(login, 'Sent', buildMessage({ from: login.address, to: CANDIDATE, subject: 'Your application', messageId: '<rv-1@ats.example.net>', text: 'Thanks for applying.' }), ['\\Seen']);
  await appendMessage(login, 'INBOX', buildMessage({ from: CANDIDATE, to: login.address, subject: 'Re: Your application', messageId: '<rv-2@example.org>', inReplyTo: '<rv-1@ats.example.net>', text: 'Happy to talk.' }));
  const storeDir = path.join(tempDir(t), 'store');
  const overrides = {
    sync: { tlsCaFile: env.caFile },
    smtp: { submission: { users: [ATS_LOGIN] }, relay: { allowPlaintext: true, retryDelaysSeconds: [3600] } },
  };
  let d = await startDaemon(t, { storeDir, smtp: true, overrides });
  await d.api('PUT', '/v1/candidates/c1', { body: { emails: [CANDIDATE] } });
  for (const [userId, account] of [['u1', login], ['u2', other]] as const) {
    t.equal((await d.api('PUT', `/v1/users/${userId}`, { body: { email: account.address } })).status, 200);
    const consent = await d.api('PUT', `/v1/users/${userId}/mailbox`, {
      actingUser: userId,
      body: {
        imap: { host: env.host, port: env.port, secure: false, auth: { user: account.user, pass: account.pass } },
        ...(userId === 'u1' ? { smtp: { host: '127.0.0.1', port: sink.port, secure: false, auth: { user: login.user, pass: smtpPass } } } : {}),
        syncSince: '2020-01-01T00:00:00Z',
      },
    });
    t.equal(consent.status, 202);
  }
  const status = async (userId: string) => (await d.api<{ state: string; counts: { messages: number } }>('GET', `/v1/users/${userId}/mailbox`, { actingUser: userId })).body;
  await waitUntil(async () => (await status('u1')).state === 'live' && (await status('u1')).counts.messages === 2 && (await status('u2')).state === 'live', 'both mailboxes live, the thread stored');

  const ats = atsClient(d.daemon.parts.relay.ports.submission);
  t.teardown(() => ats.close());
  const info = await ats.sendMail({ from: login.address, to: CANDIDATE, subject: 'Re: Your application', text: 'Tuesday?', headers: { 'X-Mailsync-Candidate': 'c1' } });
  const queueId = /queued as (\S+)/.exec(info.response)![1]!;
  await waitUntil(() => deferrals > 0, 'the provider to defer the relayed message');
  await waitUntil(async () => (await d.daemon.parts.store.get<{ nextAttemptAt: string | null }>(`rly!${queueId}`))?.nextAttemptAt, 'the message to wait for its retry');

  const sealed = sealedCredentials(d, 'u1');
  const needles = { 'IMAP password': login.pass, 'SMTP password': smtpPass, 'sealed credentials (as stored)': sealed.text, 'sealed credentials (bytes)': sealed.bytes };

  await t.test('the scan finds the sealed credentials before the revocation, also in a compressed table file', async (t) => {
    await d.daemon.parts.store.compact();
    const found = findInStoreFiles(storeDir, needles);
    t.ok(found['sealed credentials (as stored)']!.some((f) => f.endsWith('.ldb')), `the sealed blob is found in a table file (${found['sealed credentials (as stored)']!.join(', ')})`);
    t.same(found['IMAP password'], [], 'the IMAP password is never on disk in clear');
    t.same(found['SMTP password'], [], 'nor the SMTP password');
  });

  const threadsBefore = (await d.api<{ threads: unknown[] }>('GET', '/v1/candidates/c1/threads')).body.threads.length;
  const top = t;
  await t.test('DELETE closes the connection within 5 s and leaves no credential byte in any store file', async (t) => {
    // a recent write of the credentials also sits in the write-ahead log: make one now
    await d.daemon.parts.store.batch().put('mbx!u1', JSON.parse(d.daemon.parts.store.db.getSync('mbx!u1')!.subarray(1).toString('utf8'))).write();
    t.ok(findInStoreFiles(storeDir, needles)['sealed credentials (as stored)']!.some((f) => f.endsWith('.log')), 'the sealed blob is in the .log before the revocation');
    await revokeAndMeasure(t, d, 'u1', login, env);
    t.same(foundAnywhere(findInStoreFiles(storeDir, needles)), [], 'no file of the store (tables, .log, MANIFEST) holds any of them');
    t.equal(await connectedClients(other.user, env), 1, 'the other user\'s mailbox is still synced');
    const s = await d.api<{ state: string; consent: unknown }>('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' });
    t.equal(s.body.state, 'revoked');
    t.equal(s.body.consent, null);
    t.same(await d.daemon.parts.store.keys('fld!u1!'), [], 'folder states dropped');
    t.same(await d.daemon.parts.store.keys('loc!u1!'), [], 'message locations dropped');
    t.same((await d.daemon.parts.store.keys('pend!')).filter((k) => k.split('!')[2] === 'u1'), [], 'pending references dropped');
    t.equal((await status('u2')).counts.messages, 0, 'the other user never had these messages');
    t.equal((await d.api<{ threads: unknown[] }>('GET', '/v1/candidates/c1/threads')).body.threads.length, threadsBefore, 'without purge the stored threads stay');
  });

  await t.test('the message waiting to go out with the user\'s own login fails at once', async (t) => {
    const failed = (await events(d)).find((e) => e.type === 'message.failed' && e.data.queueId === queueId);
    t.ok(failed, 'message.failed for the queued message');
    t.match(failed?.data.error, /revoked/, 'naming the revocation');
    t.notOk(await d.daemon.parts.store.has(`rly!${queueId}`), 'no longer queued');
    t.notOk(await d.daemon.parts.store.has(`rlyraw!${queueId}`), 'its bytes are gone');
    t.equal(d.daemon.parts.relay.queue.depth, 0);
    t.same(sink.messages, [], 'nothing was sent with the revoked login');
  });

  await t.test('imports and links from the revoked mailbox get a clear error', async (t) => {
    const imp = await d.api<{ error: { code: string; message: string } }>('POST', '/v1/candidates/c1/imports', { actingUser: 'u1', body: { userId: 'u1' } });
    t.equal(imp.status, 409);
    t.match(imp.body.error.message, /revoked access to their mailbox at .*grant access again/);
    const link = await d.api<{ error: { code: string; message: string } }>('POST', '/v1/candidates/c1/threads', { actingUser: 'u1', body: { userId: 'u1', messageId: '<rv-2@example.org>' } });
    t.equal(link.status, 409);
    t.match(link.body.error.message, /revoked/);
    t.equal((await d.api('DELETE', '/v1/users/u1/mailbox', { actingUser: 'u1' })).status, 404, 'revoking again: nothing to revoke');
  });

  await t.test('after a restart the revoked mailbox is not opened: no login to Dovecot', async (t) => {
    await d.stop();
    const offset = fs.statSync(env.log).size;
    d = await startDaemon(top, { storeDir, smtp: true, overrides });
    // by the time the other user's mailbox is live again, every worker the daemon starts has started
    await waitUntil(async () => (await status('u2')).state === 'live' && loginLines(env, other.user, offset).some((l) => l.includes('Login:')), 'the other mailbox to log in again');
    t.same(loginLines(env, login.user, offset), [], 'Dovecot saw no login (nor attempt) for the revoked user');
    t.equal(await connectedClients(login.user, env), 0);
    t.notOk(d.daemon.parts.supervisor.has('u1'), 'no worker for the revoked user');
    t.equal((await status('u1')).state, 'revoked');
    t.same(foundAnywhere(findInStoreFiles(storeDir, needles)), [], 'and still no credential byte in the store');
  });

  await t.test('a new consent opens the mailbox again', async (t) => {
    const consent = await d.api('PUT', '/v1/users/u1/mailbox', {
      actingUser: 'u1',
      body: { imap: { host: env.host, port: env.port, secure: false, auth: { user: login.user, pass: login.pass } }, syncSince: '2020-01-01T00:00:00Z' },
    });
    t.equal(consent.status, 202);
    await waitUntil(async () => (await status('u1')).state === 'live', 'live again');
  });
});

t.test('an OAuth2 consent against Dovecot\'s oauth2 passdb: tokens destroyed, purge deletes its messages', async (t) => {
  const provider = await new FakeOAuth2Provider({ expiresIn: 3600, rotateRefreshTokens: true }).start(t);
  const server = await startPrivateDovecot(t, { oauth2Url: provider.introspectionUrl });
  const login = await createMailbox('oauth-revoke', undefined, server);
  await appendMessage(login, 'Sent', buildMessage({ from: login.address, to: CANDIDATE, subject: 'Offer', messageId: '<ro-1@ats.example.net>', text: 'Here is the offer.' }), ['\\Seen']);
  await appendMessage(login, 'INBOX', buildMessage({ from: CANDIDATE, to: login.address, subject: 'Re: Offer', messageId: '<ro-2@example.org>', inReplyTo: '<ro-1@ats.example.net>', text: 'I accept.' }));
  const grant = provider.grant(login.user);
  const storeDir = path.join(tempDir(t), 'store');
  const overrides = {
    oauth2: { google: { tokenUrl: provider.tokenUrl, clientId: provider.opts.clientId, clientSecret: provider.opts.clientSecret } },
    sync: { tlsCaFile: server.caFile },
  };
  let d = await startDaemon(t, { storeDir, overrides });
  await d.api('PUT', '/v1/candidates/c1', { body: { emails: [CANDIDATE] } });
  await d.api('PUT', '/v1/users/u1', { body: { email: login.address } });
  // an expired access token: the daemon refreshes (and the provider rotates the refresh token)
  const oauth = { provider: 'google', accessToken: provider.issueAccessToken(login.user, 1), refreshToken: grant.refreshToken, expiresAt: new Date(Date.now() - 1000).toISOString() };
  // the refresh is held back a moment, so the sealed credentials of the consent itself can be read
  provider.tokenDelayMs = 1000;
  const consent = await d.api('PUT', '/v1/users/u1/mailbox', {
    actingUser: 'u1',
    body: {
      imap: { host: server.host, port: server.port, secure: false, auth: { user: login.user, oauth2: oauth } },
      smtp: { host: server.host, port: 25, secure: false, auth: { user: login.user, oauth2: oauth } },
      syncSince: '2020-01-01T00:00:00Z',
    },
  });
  t.equal(consent.status, 202);
  const consentBlob = sealedCredentials(d, 'u1');
  provider.tokenDelayMs = 0;
  const status = async () => (await d.api<{ state: string; counts: { messages: number } }>('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' })).body;
  await waitUntil(async () => (await status()).state === 'live' && (await status()).counts.messages === 2, 'live over XOAUTH2 with the thread stored');
  t.ok(provider.tokenRequests.length >= 1, 'the token was refreshed');
  const refreshedBlob = sealedCredentials(d, 'u1');
  t.not(refreshedBlob.text, consentBlob.text, 'the refreshed tokens were sealed anew');
  const tokens = [...provider.accessTokensOf(login.user), ...provider.allRefreshTokensOf(login.user)];
  t.ok(tokens.length >= 4, 'access and refresh tokens, old and rotated');
  const needles: Record<string, string | Buffer> = {
    'sealed credentials of the consent': consentBlob.text, 'sealed credentials after the refresh': refreshedBlob.text,
    'sealed bytes after the refresh': refreshedBlob.bytes,
    ...Object.fromEntries(tokens.map((tok, i) => [`token ${i + 1} (${tok.slice(0, 3)}…)`, tok])),
  };
  await d.daemon.parts.store.compact();
  const before = findInStoreFiles(storeDir, needles);
  t.ok(before['sealed credentials after the refresh']!.length > 0, 'the scan finds the current sealed credentials before the revocation');
  t.same(tokens.flatMap((_, i) => before[`token ${i + 1} (${tokens[i]!.slice(0, 3)}…)`]!), [], 'no token is ever on disk in clear');

  await revokeAndMeasure(t, d, 'u1', login, server, '?purge=true');
  t.same(foundAnywhere(findInStoreFiles(storeDir, needles)), [], 'no token and no sealed blob (current or superseded) in any store file');
  t.equal((await d.api<{ threads: unknown[] }>('GET', '/v1/candidates/c1/threads')).body.threads.length, 0, 'purge: the messages that came only from this mailbox are gone');
  const introspections = provider.introspections.length;
  const tokenRequests = provider.tokenRequests.length;
  await d.stop();
  const offset = fs.statSync(server.log).size;
  d = await startDaemon(t, { storeDir, overrides });
  await waitUntil(() => d.daemon.parts.supervisor.size === 0 && d.logs.some((l) => l.includes('"mailsync started"')), 'the daemon to start');
  t.equal((await status()).state, 'revoked');
  t.same(loginLines(server, login.user, offset), [], 'no XOAUTH2 login to Dovecot after the restart');
  t.equal(provider.introspections.length, introspections, 'no token was presented to Dovecot');
  t.equal(provider.tokenRequests.length, tokenRequests, 'no refresh was asked of the provider');
});
