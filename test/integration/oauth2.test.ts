import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { appendMessage, buildMessage, createMailbox, kickUser, startPrivateDovecot } from '../helpers/dovecot.js';
import { startDaemon, waitUntil, type RunningDaemon } from '../helpers/daemon.js';
import { tempDir } from '../helpers/stack.js';
import { FakeOAuth2Provider } from '../fakes/oauth2-provider.js';

/**
 * OAuth2 for real: Dovecot's oauth2 passdb checks every XOAUTH2 login against the fake
 * provider's introspection endpoint, and the daemon refreshes against the same fake provider's
 * token endpoint (Google and Microsoft cannot be reached from tests; Dovecot is real). Access
 * tokens live 60 s and are refreshed a minute early, so every new login needs a refresh.
 */

interface Status { state: string; lastError: { code: string; message: string } | null }
interface Ev { type: string; data: { userId?: string; state?: string; message?: { messageId: string } } }

t.test('XOAUTH2 against Dovecot with refresh, rotation, routine reconnects and a revoked grant', async (t) => {
  const provider = await new FakeOAuth2Provider({ expiresIn: 60, rotateRefreshTokens: true }).start(t);
  const server = await startPrivateDovecot(t, { oauth2Url: provider.introspectionUrl });
  const login = await createMailbox('oauth', undefined, server);
  const candidate = 'sam.candidate@example.org';
  await appendMessage(login, 'Sent', buildMessage({ from: login.address, to: candidate, subject: 'Your application', messageId: '<oa-1@ats.example.net>', text: 'Thanks for applying.' }), ['\\Seen']);
  await appendMessage(login, 'INBOX', buildMessage({ from: candidate, to: login.address, subject: 'Re: Your application', messageId: '<oa-2@example.org>', inReplyTo: '<oa-1@ats.example.net>', text: 'Happy to talk.' }));

  const grant = provider.grant(login.user);
  // the token the ATS got at consent: valid, but within the refresh margin of a minute
  const initialToken = provider.issueAccessToken(login.user, 30);
  const storeDir = path.join(tempDir(t), 'store');
  const overrides = {
    oauth2: { google: { tokenUrl: provider.tokenUrl, clientId: provider.opts.clientId, clientSecret: provider.opts.clientSecret } },
    sync: { tlsCaFile: server.caFile },
  };
  const top = t;
  let d: RunningDaemon = await startDaemon(top, { storeDir, overrides });
  const status = async () => (await d.api<Status>('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' })).body;
  const events = async () => (await d.api<{ events: Ev[] }>('GET', '/v1/events?limit=1000')).body.events;
  const stateEvents = async () => (await events()).filter((e) => e.type === 'mailbox.state_changed').map((e) => e.data.state);
  const oauth = { provider: 'google', accessToken: initialToken, refreshToken: grant.refreshToken, expiresAt: new Date(Date.now() + 30_000).toISOString() };

  await t.test('consent with an access token about to expire: refreshed before the first login', async (t) => {
    t.equal((await d.api('PUT', '/v1/users/u1', { body: { email: login.address } })).status, 200);
    const res = await d.api('PUT', '/v1/users/u1/mailbox', {
      actingUser: 'u1',
      body: {
        imap: { host: server.host, port: server.port, secure: false, auth: { user: login.user, oauth2: oauth } },
        smtp: { host: server.host, port: 25, secure: false, auth: { user: login.user, oauth2: oauth } },
        syncSince: '2020-01-01T00:00:00Z',
      },
    });
    t.equal(res.status, 202);
    t.notOk(JSON.stringify(res.body).includes(grant.refreshToken), 'no token echoed');
    await waitUntil(async () => (await status()).state === 'live', 'state live');
    t.equal(provider.tokenRequests.length, 1, 'one refresh');
    t.same(provider.tokenRequests[0]!.refreshToken, grant.refreshToken, 'with the consented refresh token');
    t.notOk(provider.introspections.some((i) => i.token === initialToken), 'the token inside the margin was never used to log in');
    t.ok(provider.introspections.length >= 1 && provider.introspections.every((i) => i.active), 'Dovecot accepted the refreshed token');
    const counts = (await d.api<{ counts: { threads: number; messages: number } }>('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' })).body.counts;
    t.same(counts, { threads: 1, messages: 2, quarantined: 0 }, 'the ATS thread was synced over XOAUTH2');
  });

  await t.test('the rotated refresh token is stored, sealed', async (t) => {
    const current = provider.refreshTokensOf(login.user);
    t.equal(current.length, 1, 'the provider rotated the refresh token');
    t.not(current[0], grant.refreshToken);
    await d.stop();
    const files = fs.readdirSync(storeDir).map((f) => fs.readFileSync(path.join(storeDir, f)).toString('latin1'));
    t.notOk(files.some((f) => f.includes(current[0]!) || f.includes(grant.refreshToken)), 'no refresh token in clear in the store files');
    t.notOk(d.logs.some((l) => l.includes(current[0]!) || l.includes(grant.refreshToken) || l.includes(initialToken)), 'no token in the logs');
    // the old refresh token is dead at the provider: working again after a restart proves the new one was kept
    const before = provider.tokenRequests.length;
    const loginsBefore = provider.introspections.length;
    d = await startDaemon(top, { storeDir, overrides });
    await waitUntil(() => provider.introspections.length > loginsBefore, 'a login after the restart');
    await waitUntil(async () => (await status()).state === 'live', 'live after restart');
    t.equal(provider.tokenRequests.length, before + 1, 'a restart refreshes once more (the token expires within the margin)');
    t.equal(provider.tokenRequests.at(-1)!.refreshToken, current[0], 'with the rotated refresh token');
  });

  await t.test('the server ends the session: reconnect with a fresh token, no state change', async (t) => {
    const statesBefore = await stateEvents();
    const tokensBefore = provider.tokenRequests.length;
    const loginsBefore = provider.introspections.length;
    await waitUntil(() => kickUser(login.user, server), 'the session ended by the server');
    await waitUntil(() => provider.introspections.length > loginsBefore, 'a new login after the kick');
    t.equal(provider.tokenRequests.length, tokensBefore + 1, 'the expiring token was refreshed for the new session');
    t.ok(provider.introspections.at(-1)!.active, 'the new login was accepted');
    await appendMessage(login, 'INBOX', buildMessage({ from: candidate, to: login.address, subject: 'Re: Your application', messageId: '<oa-3@example.org>', inReplyTo: '<oa-2@example.org>', text: 'One more question.' }));
    await waitUntil(async () => (await events()).some((e) => e.type === 'message.created' && e.data.message?.messageId === '<oa-3@example.org>'), 'the reply after the reconnect is synced');
    t.same(await stateEvents(), statesBefore, 'no mailbox.state_changed for a routine reconnect');
    t.equal((await status()).state, 'live');
  });

  await t.test('one refresh at a time per user; SMTP shares the refreshed grant', async (t) => {
    provider.tokenDelayMs = 300;
    const before = provider.tokenRequests.length;
    const logins = d.daemon.parts.logins;
    // the stored token is always inside the margin (60 s tokens, 60 s margin)
    const results = await Promise.all([...Array(5)].map(() => logins.login('u1', 'imap')).concat([logins.login('u1', 'smtp')]));
    t.equal(provider.tokenRequests.length, before + 1, 'six concurrent logins, one token request');
    const tokens = new Set(results.map((r) => ('accessToken' in r.auth ? r.auth.accessToken : '')));
    t.equal(tokens.size, 1, 'all got the same fresh token');
    const smtp = await logins.smtpAuth('u1');
    t.same(Object.keys(smtp).sort(), ['accessToken', 'type', 'user'], 'nodemailer XOAUTH2 credentials for the relay');
    t.equal((smtp as { type: string }).type, 'OAuth2');
    provider.tokenDelayMs = 0;
  });

  await t.test('a revoked grant: auth_failed once, "grant access again", no retry storm', async (t) => {
    provider.revoke(login.user);
    const before = provider.tokenRequests.length;
    await waitUntil(() => kickUser(login.user, server), 'the session ended by the server');
    const s = await waitUntil(async () => {
      const st = await status();
      return st.state === 'auth_failed' ? st : null;
    }, 'state auth_failed');
    t.equal(s.lastError!.code, 'oauth2_grant_revoked');
    t.match(s.lastError!.message, /must grant access again/);
    t.equal(provider.tokenRequests.length, before + 1, 'the provider was asked once');
    await t.rejects(d.daemon.parts.logins.login('u1', 'smtp'), /grant access again/, 'the relay gets the same answer');
    t.equal(provider.tokenRequests.length, before + 1, '...without asking the provider again');
    const states = await stateEvents();
    t.equal(states.filter((x) => x === 'auth_failed').length, 1, 'one mailbox.state_changed for it');
    const retry = d.logs.map((l) => JSON.parse(l) as { msg: string; delayMs?: number }).filter((l) => l.msg === 'waiting before reconnecting').at(-1);
    t.ok(retry && retry.delayMs! >= 3_600_000, `the next attempt waits an hour (${retry?.delayMs} ms)`);
  });
});
