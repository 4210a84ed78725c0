import t from 'tap';
import { SMTPServer } from 'smtp-server';
import type { AddressInfo } from 'node:net';
import { createMailbox, dovecotEnv } from '../helpers/dovecot.js';
import { startDaemon, startReceiver, waitUntil, WEBHOOK_SECRET } from '../helpers/daemon.js';
import { ATS_LOGIN, atsClient } from '../helpers/smtp.js';
import { FakeOAuth2Provider } from '../fakes/oauth2-provider.js';

/**
 * The relay sends with XOAUTH2 when the consent holds an OAuth2 grant: the access token is
 * refreshed before it expires, and a token the provider's SMTP server refuses is refreshed and
 * the message sent again at once. The fake provider stands for Google's token endpoint; the
 * sink checks every token against it, as Gmail's SMTP server would.
 */

t.test('XOAUTH2: a token about to expire is refreshed first; a refused one is refreshed and the send repeated', async (t) => {
  const provider = await new FakeOAuth2Provider({ expiresIn: 3600 }).start(t);
  const login = await createMailbox('relayoauth');
  const logins: Array<{ user: string; token: string; ok: boolean }> = [];
  const refused = new Set<string>();
  const received: Buffer[] = [];
  const sink = new SMTPServer({
    logger: false, disableReverseLookup: true, allowInsecureAuth: true, disabledCommands: ['STARTTLS'], authMethods: ['XOAUTH2'], closeTimeout: 200,
    onAuth(auth, _session, cb) {
      void (async () => {
        const token = auth.accessToken ?? '';
        const res = await fetch(provider.introspectionUrl, { method: 'POST', body: new URLSearchParams({ token }) });
        const info = await res.json() as { active: boolean; username?: string };
        const ok = info.active && info.username === auth.username && !refused.has(token);
        logins.push({ user: auth.username ?? '', token, ok });
        cb(null, ok ? { user: auth.username } : { data: { status: '401', schemes: 'bearer', scope: 'https://mail.google.com/' } });
      })();
    },
    onData(stream, _session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        received.push(Buffer.concat(chunks));
        cb();
      });
    },
  });
  sink.on('error', () => {});
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => sink.close(() => r())));
  const sinkPort = (sink.server.address() as AddressInfo).port;

  const receiver = await startReceiver(t);
  const env = dovecotEnv();
  const d = await startDaemon(t, {
    smtp: true,
    overrides: {
      webhooks: { url: receiver.url, secret: WEBHOOK_SECRET },
      oauth2: { google: { tokenUrl: provider.tokenUrl, clientId: provider.opts.clientId, clientSecret: provider.opts.clientSecret } },
      sync: { tlsCaFile: env.caFile },
      smtp: { submission: { users: [ATS_LOGIN] }, relay: { allowPlaintext: true, retryDelaysSeconds: [0.2] } },
    },
  });
  const grant = provider.grant(login.user);
  const early = provider.issueAccessToken(login.user, 30);
  await d.api('PUT', '/v1/users/u1', { body: { email: login.address } });
  t.equal((await d.api('PUT', '/v1/users/u1/mailbox', {
    actingUser: 'u1',
    body: {
      imap: { host: env.host, port: env.port, secure: false, auth: { user: login.user, pass: login.pass } },
      smtp: { host: '127.0.0.1', port: sinkPort, secure: false, auth: { user: login.user, oauth2: { provider: 'google', accessToken: early, refreshToken: grant.refreshToken, expiresAt: new Date(Date.now() + 30_000).toISOString() } } },
    },
  })).status, 202);

  const ats = atsClient(d.daemon.parts.relay.ports.submission);
  t.teardown(() => ats.close());
  await ats.sendMail({ from: login.address, to: 'kim.candidate@example.org', subject: 'First', text: 'One.' });
  await receiver.waitFor((w) => w.body.type === 'message.sent', 'the first message sent');
  t.equal(provider.tokenRequests.length, 1, 'the token inside the refresh margin was refreshed before sending');
  t.notOk(logins.some((l) => l.token === early), 'the old token was never offered to the server');
  t.same(logins.map((l) => [l.user, l.ok]), [[login.user, true]], 'one XOAUTH2 login as the user');

  // a new consent whose token the provider's server refuses (revoked early): refresh, send again at once
  const revokedEarly = provider.issueAccessToken(login.user, 3600);
  await d.api('PUT', '/v1/users/u1/mailbox', {
    actingUser: 'u1',
    body: {
      imap: { host: env.host, port: env.port, secure: false, auth: { user: login.user, pass: login.pass } },
      smtp: { host: '127.0.0.1', port: sinkPort, secure: false, auth: { user: login.user, oauth2: { provider: 'google', accessToken: revokedEarly, refreshToken: grant.refreshToken, expiresAt: new Date(Date.now() + 3_600_000).toISOString() } } },
    },
  });
  refused.add(revokedEarly);
  await ats.sendMail({ from: login.address, to: 'kim.candidate@example.org', subject: 'Second', text: 'Two.' });
  await waitUntil(() => receiver.ofType('message.sent').length === 2, 'the second message sent');
  const later = logins.slice(1);
  t.ok(later.length >= 2 && later.slice(0, -1).every((l) => l.token === revokedEarly && !l.ok), 'the server refused the token of the consent');
  t.ok(later.at(-1)!.ok && later.at(-1)!.token !== revokedEarly, 'then a fresh token logged in');
  t.equal(provider.tokenRequests.length, 2, 'one more refresh, after the refusal');
  t.equal(received.length, 2, 'both messages arrived, once each');
  t.same(receiver.ofType('message.failed'), [], 'nothing failed');
  t.notOk(d.logs.some((l) => l.includes(grant.refreshToken) || logins.some((x) => l.includes(x.token))), 'no token in the log');
});
