import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { base64Cores, describeLeaks, scanLogDir, scanText, type Secret } from '../helpers/log-scan.js';
import { BODY_MARKER, PUBLIC_DEFAULTS, readNotedSecrets, runDir } from '../helpers/log-capture.js';
import { startDaemon, startReceiver, TOKEN, waitUntil, WEBHOOK_SECRET } from '../helpers/daemon.js';
import { appendMessage, buildMessage, createMailbox, startPrivateDovecot } from '../helpers/dovecot.js';
import { ATS_LOGIN, atsClient, startSink } from '../helpers/smtp.js';
import { FakeOAuth2Provider } from '../fakes/oauth2-provider.js';
import { tempDir } from '../helpers/stack.js';
import { verifySignature } from '../../daemon/events/signature.js';

/**
 * The suite-wide log scan (test/setup/stop-servers.ts) is only worth something if it finds a
 * leak and if what it looks for really reaches the daemons. So: the scanner finds planted
 * secrets however they are encoded, and never repeats them; and one daemon is given every kind
 * of secret the tests use, shown to use each of them, and its log file is where the scan reads
 * with every secret noted for it.
 */

const PASSWORD = 'imap-pass-9d2e61b0';
const ACCESS = 'at-0f3c9a7e5b2d4c18';

t.test('the scanner finds a planted secret in every encoding and never prints it', async (t) => {
  const secrets: Secret[] = [
    { kind: 'password', value: PASSWORD },
    { kind: 'oauth access token', value: ACCESS },
    { kind: 'message body marker', value: BODY_MARKER },
    { kind: 'password', value: 'pw' },
  ];
  const lines = [
    JSON.stringify({ level: 30, msg: 'clean line', userId: 'u1', host: '127.0.0.1' }),
    JSON.stringify({ level: 50, msg: 'login failed', err: { message: `AUTHENTICATE failed for robin:${PASSWORD}` } }),
    JSON.stringify({ level: 20, msg: 'C: AUTH PLAIN', line: Buffer.from(`\0robin\0${PASSWORD}`).toString('base64') }),
    JSON.stringify({ level: 20, msg: 'C: AUTHENTICATE XOAUTH2', line: Buffer.from(`user=robin\x01auth=Bearer ${ACCESS}\x01\x01`).toString('base64') }),
    JSON.stringify({ level: 20, msg: 'token request', body: `grant_type=refresh_token&password=${encodeURIComponent(`${PASSWORD}/x`)}` }),
    JSON.stringify({ level: 30, msg: 'parsed', snippet: `Hello (${BODY_MARKER})` }),
    JSON.stringify({ level: 30, msg: 'a short password is not looked for: pw pw pw' }),
  ];
  const leaks = scanText(lines.join('\n'), secrets, 'd.log');
  t.same(leaks.map((l) => [l.line, l.kind, l.encoding]), [
    [2, 'password', 'as written'],
    [3, 'password', 'base64'],
    [4, 'oauth access token', 'base64'],
    [5, 'password', 'as written'],
    [6, 'message body marker', 'as written'],
  ], 'each leak with its line, kind and encoding; the clean and short ones are not reported');
  const report = describeLeaks(leaks);
  t.match(report, /^d\.log:2: password \(as written\)$/m, 'the report names file, line and kind');
  for (const s of [PASSWORD, ACCESS, BODY_MARKER, ...base64Cores(PASSWORD), ...base64Cores(ACCESS)]) t.notOk(report.includes(s), 'the report does not contain the secret');

  const pct = scanText(`form: secret=${encodeURIComponent('p@ss word+tok/1')}`, [{ kind: 'webhook secret', value: 'p@ss word+tok/1' }]);
  t.same(pct.map((l) => l.encoding), ['percent-encoded'], 'a percent-encoded secret is found');
  const json = scanText(JSON.stringify({ msg: 'x', v: 'quote"in\\secret' }), [{ kind: 'api token', value: 'quote"in\\secret' }]);
  t.same(json.map((l) => l.encoding), ['JSON-escaped'], 'a secret that JSON escapes is found as written in a JSON line');
  t.same(scanText(lines[0]!, secrets), [], 'a clean line gives nothing');

  t.same([...PUBLIC_DEFAULTS], ['change-me'], 'the documented defaults of sensitive options, which the daemon warns about by name, are the only values left out');

  const dir = tempDir(t);
  fs.writeFileSync(path.join(dir, 'a.log'), `${lines[0]}\n${lines[0]}\n`);
  fs.writeFileSync(path.join(dir, 'b.log'), `${lines[0]}\n${lines[5]}\n`);
  fs.writeFileSync(path.join(dir, 'secrets.1.jsonl'), `${JSON.stringify({ kind: 'message body marker', value: BODY_MARKER })}\n`);
  fs.writeFileSync(path.join(dir, 'notes.txt'), lines[1]!);
  const result = scanLogDir(dir, readNotedSecrets(dir));
  t.same([result.files, result.lines], [2, 4], 'every .log file of the directory is read');
  t.same(result.leaks, [{ file: 'b.log', line: 2, kind: 'message body marker', encoding: 'as written' }], 'the planted leak is found with its file and line, from the noted secrets');
});

t.test('every kind of secret the tests use reaches a daemon, which uses it; the scan looks for all of them in its log', async (t) => {
  // IMAP password, body marker, API token, webhook secret, SMTP submission and provider passwords
  // one Dovecot of its own, for password and XOAUTH2 logins (checked against the fake provider)
  const provider = await new FakeOAuth2Provider({ expiresIn: 60 }).start(t);
  const oauthServer = await startPrivateDovecot(t, { oauth2Url: provider.introspectionUrl });
  const env = oauthServer;
  const login = await createMailbox('logscan', PASSWORD, oauthServer);
  const smtpPass = 'provider-smtp-pass-5a17e';
  const sink = await startSink(t, { auth: { user: login.user, pass: smtpPass } });
  const receiver = await startReceiver(t);
  const oauthLogin = await createMailbox('logscan-oauth', undefined, oauthServer);
  const original = buildMessage({ from: login.address, to: 'pat.candidate@example.org', subject: 'Interview', messageId: '<ls-1@ats.example.net>', text: `When are you free? (${BODY_MARKER})` });
  await appendMessage(login, 'Sent', original, ['\\Seen']);
  await appendMessage(oauthLogin, 'Sent', original, ['\\Seen']);

  const d = await startDaemon(t, {
    smtp: true,
    overrides: {
      webhooks: { url: receiver.url, secret: WEBHOOK_SECRET },
      sync: { tlsCaFile: env.caFile },
      smtp: { submission: { users: [ATS_LOGIN] }, relay: { allowPlaintext: true } },
      oauth2: { google: { tokenUrl: provider.tokenUrl, clientId: provider.opts.clientId, clientSecret: provider.opts.clientSecret } },
    },
  });
  await d.api('PUT', '/v1/users/u1', { body: { email: login.address } });
  await d.api('PUT', '/v1/users/u2', { body: { email: oauthLogin.address } });
  t.equal((await d.api('PUT', '/v1/users/u1/mailbox', {
    actingUser: 'u1',
    body: {
      imap: { host: env.host, port: env.port, secure: false, auth: { user: login.user, pass: PASSWORD } },
      smtp: { host: '127.0.0.1', port: sink.port, secure: false, auth: { user: login.user, pass: smtpPass } },
      syncSince: '2020-01-01T00:00:00Z',
    },
  })).status, 202);
  const grant = provider.grant(oauthLogin.user);
  const stale = provider.issueAccessToken(oauthLogin.user, 1);
  t.equal((await d.api('PUT', '/v1/users/u2/mailbox', {
    actingUser: 'u2',
    body: {
      imap: { host: oauthServer.host, port: oauthServer.port, secure: false, auth: { user: oauthLogin.user, oauth2: { provider: 'google', accessToken: stale, refreshToken: grant.refreshToken, expiresAt: new Date(Date.now() + 1_000).toISOString() } } },
      syncSince: '2020-01-01T00:00:00Z',
    },
  })).status, 202);

  const live = async (u: string) => (await d.api<{ state: string }>('GET', `/v1/users/${u}/mailbox`, { actingUser: u })).body.state === 'live';
  await waitUntil(() => live('u1'), 'u1 live: the IMAP password was used');
  await waitUntil(() => live('u2'), 'u2 live over XOAUTH2', 20_000);
  t.ok(provider.tokenRequests.some((r) => r.refreshToken === grant.refreshToken && r.clientSecret === provider.opts.clientSecret), 'the refresh token and client secret were used');
  const refreshed = provider.accessTokensOf(oauthLogin.user).filter((a) => a !== stale);
  t.ok(refreshed.length >= 1 && provider.introspections.some((i) => refreshed.includes(i.token) && i.active), 'the refreshed access token logged in at Dovecot');

  const created = await receiver.waitFor((w) => w.body.type === 'message.created', 'a webhook');
  t.ok(verifySignature(WEBHOOK_SECRET, String(created.headers['x-mailsync-signature']), created.raw), 'the webhook is signed with the webhook secret');
  const key = (created.body.data.message as { id: string }).id;
  const msg = await d.api<{ text: string }>('GET', `/v1/messages/${key}`);
  t.match(msg.body.text, BODY_MARKER, 'the body marker reached the daemon (with the API token)');

  const ats = atsClient(d.daemon.parts.relay.ports.submission);
  t.teardown(() => ats.close());
  await ats.sendMail({ from: login.address, to: 'pat.candidate@example.org', subject: 'Next step', text: `Thursday? (${BODY_MARKER})`, headers: { 'X-Mailsync-Candidate': 'c1' } });
  await waitUntil(() => sink.messages.length === 1, 'the relayed message at the provider');
  t.equal(sink.messages[0]!.authUser, login.user, 'the relay logged in with the provider password (the sink checks it)');

  await d.stop();
  // what the after script will read: this daemon's log file, and the secrets noted for the run
  const dir = runDir();
  const mine = fs.readdirSync(dir).filter((f) => f.endsWith('.log') && f.startsWith('test_privacy_log_scan.') && f.includes(`.${process.pid}.`));
  t.ok(mine.length >= 1, `the daemon's log is in the run's log directory (${mine.join(', ')})`);
  const text = mine.map((f) => fs.readFileSync(path.join(dir, f), 'utf8')).join('');
  t.equal(text.split('\n').filter(Boolean).length, d.logs.length, 'every line of it');
  t.ok(d.logs.some((l) => l.includes('"mailbox consent granted"')) && d.logs.some((l) => l.includes('"level":20')), 'at debug level, with the consent in it');
  const noted = readNotedSecrets(dir);
  const has = (kind: string, value: string) => noted.some((s) => s.kind === kind && s.value === value);
  const expected: Array<[string, string]> = [
    ['password', PASSWORD], ['password', smtpPass], ['password', ATS_LOGIN.pass], ['api token', TOKEN], ['webhook secret', WEBHOOK_SECRET],
    ['oauth refresh token', grant.refreshToken], ['oauth access token', stale], ['oauth client secret', provider.opts.clientSecret],
    ...refreshed.map((a): [string, string] => ['oauth access token', a]),
  ];
  for (const [kind, value] of expected) t.ok(has(kind, value), `the scan looks for the ${kind} given to the daemon`);
  const result = scanLogDir(dir, [...noted, { kind: 'message body marker', value: BODY_MARKER }]);
  const ours = result.leaks.filter((l) => mine.includes(l.file));
  t.same(ours, [], `no secret in this daemon's log${ours.length ? `:\n${describeLeaks(ours)}` : ''}`);
});
