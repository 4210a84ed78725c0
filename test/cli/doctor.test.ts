import crypto from 'node:crypto';
import fs from 'node:fs';
import t from 'tap';
import { appendMessage, buildMessage, createMailbox, dovecotEnv, mailboxSnapshot } from '../helpers/dovecot.js';
import { TOKEN } from '../helpers/daemon.js';
import { freePort, runCli, startServe, writeServeConfig } from '../helpers/cli.js';
import { Store } from '../../daemon/store/store.js';
import { Outbox } from '../../daemon/store/outbox.js';
import { Accounts } from '../../daemon/store/accounts.js';

/**
 * `mailsync doctor --user U` against the real Dovecot: good credentials (STARTTLS and
 * implicit TLS), a wrong password, a port nobody listens on, and a host that does not
 * resolve. Through the running daemon's API, and on the store with the daemon stopped.
 */

t.test('doctor reports each step in plain words', async (t) => {
  const env = dovecotEnv();
  const good = await createMailbox('doctor-good');
  await appendMessage(good, 'INBOX', buildMessage({ from: 'a@example.com', to: good.address, subject: 'hello', text: 'hi' }), ['\\Seen']);
  const wrong = await createMailbox('doctor-wrong');
  const setup = await writeServeConfig(t, { sync: { tlsCaFile: env.caFile, backoff: { minMs: 60_000, maxMs: 60_000 } } });
  const cfg = ['--config', setup.configFile];
  const serve = await startServe(t, setup);
  const api = (method: string, url: string, body: unknown, actingUser?: string) => fetch(`${setup.apiUrl}${url}`, {
    method, body: JSON.stringify(body),
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', ...(actingUser ? { 'x-acting-user': actingUser } : {}) },
  });
  const grant = async (userId: string, imap: Record<string, unknown>) => {
    await api('PUT', `/v1/users/${userId}`, { email: `${userId}@example.com` });
    const res = await api('PUT', `/v1/users/${userId}/mailbox`, { imap, syncSince: '2020-01-01T00:00:00Z' }, userId);
    t.equal(res.status, 202, `consent of ${userId}`);
  };
  const closedPort = await freePort();
  await grant('u-good', { host: env.host, port: env.port, secure: false, auth: { user: good.user, pass: good.pass } });
  await grant('u-tls', { host: 'localhost', port: env.tlsPort, secure: true, auth: { user: good.user, pass: good.pass } });
  await grant('u-wrong', { host: env.host, port: env.port, secure: false, auth: { user: wrong.user, pass: 'not-the-password' } });
  await grant('u-closed', { host: '127.0.0.1', port: closedPort, secure: true, auth: { user: good.user, pass: good.pass } });
  const line = (out: string, step: string) => out.split('\n').find((l) => new RegExp(`^  \\S+\\s+${step}\\s`).test(l)) ?? '';
  const advice = (out: string, step: string) => {
    const lines = out.split('\n');
    return lines[lines.indexOf(line(out, step)) + 1] ?? '';
  };

  await t.test('good credentials: every step passes, the mailbox is untouched', async (t) => {
    const before = await mailboxSnapshot(good);
    const res = await runCli(['doctor', '--user', 'u-good', ...cfg]);
    t.equal(res.code, 0, res.stdout + res.stderr);
    t.match(res.stdout, /^Mailbox of u-good: 127\.0\.0\.1:\d+ \(STARTTLS or plain\), login doctor-good\S* with a password/);
    t.match(line(res.stdout, 'DNS'), /^ {2}ok\s+DNS\s+127\.0\.0\.1 is an IP address/);
    t.match(line(res.stdout, 'TCP'), /ok\s+TCP\s+connected to 127\.0\.0\.1:\d+ in \d+ ms/);
    t.match(line(res.stdout, 'greeting'), /ok\s+greeting\s+\* OK/);
    t.match(line(res.stdout, 'TLS'), /ok\s+TLS\s+STARTTLS: TLSv1\.[23], certificate for/);
    t.match(line(res.stdout, 'auth'), /ok\s+auth\s+logged in as doctor-good/);
    t.match(line(res.stdout, 'capabilities'), /ok\s+capabilities\s+IDLE/);
    t.match(line(res.stdout, 'folders'), /INBOX \(1 messages\)/);
    t.match(line(res.stdout, 'IDLE'), /ok\s+IDLE\s+the server accepted IDLE/);
    t.match(res.stdout, /Result: every step passed/);
    t.match(res.stderr, /checked by read from the running daemon/, 'the running daemon did the check');
    t.notOk(res.stdout.includes(good.pass), 'the password is never shown');
    t.same(await mailboxSnapshot(good), before, 'flags and messages are exactly as before');
    const tlsRes = await runCli(['doctor', '--user', 'u-tls', '--json', ...cfg]);
    t.equal(tlsRes.code, 0, tlsRes.stdout);
    const report = JSON.parse(tlsRes.stdout) as { ok: boolean; steps: Array<{ step: string; outcome: string; detail: string }> };
    t.same(report.steps.map((s) => s.step), ['DNS', 'TCP', 'TLS', 'greeting', 'auth', 'capabilities', 'folders', 'IDLE'], 'implicit TLS: TLS comes before the greeting');
    t.match(report.steps[0]!.detail, /localhost resolves to/);
  });

  await t.test('wrong password: auth fails, with what to do', async (t) => {
    const res = await runCli(['doctor', '--user', 'u-wrong', ...cfg]);
    t.equal(res.code, 1);
    t.match(line(res.stdout, 'greeting'), /^ {2}ok/);
    t.match(line(res.stdout, 'auth'), /^ {2}FAIL\s+auth\s+auth_failed: the server answered/);
    t.match(advice(res.stdout, 'auth'), /what to do: The mail server refused the login\. The user must grant access again/);
    t.match(line(res.stdout, 'IDLE'), /^ {2}skipped\s+IDLE\s+not reached/);
    t.match(res.stdout, /Result: the mailbox cannot be synced: the auth step failed/);
    t.notOk(res.stdout.includes('not-the-password'), 'the stored password is not shown');
  });

  await t.test('a port nobody listens on: TCP fails', async (t) => {
    const res = await runCli(['doctor', '--user', 'u-closed', ...cfg]);
    t.equal(res.code, 1);
    t.match(line(res.stdout, 'TCP'), new RegExp(`FAIL\\s+TCP\\s+cannot connect to 127\\.0\\.0\\.1:${closedPort}: nothing accepts connections there \\(ECONNREFUSED\\)`));
    t.match(advice(res.stdout, 'TCP'), /what to do: Check the port in the consent: IMAP over TLS is 993/);
    t.match(line(res.stdout, 'TLS'), /skipped/);
  });

  t.equal(await serve.stop(), 0, 'daemon stopped');

  await t.test('with the daemon stopped: a host that no longer resolves, and the good one again', async (t) => {
    // the name resolved when consent was given; DNS changed since (written to the store directly)
    const key = Buffer.from(fs.readFileSync(setup.keyFile, 'utf8').trim(), 'hex');
    const store = await Store.open({ path: setup.storePath, masterKey: key, encryptContent: true });
    const outbox = new Outbox(store, { push: false });
    await outbox.init();
    const accounts = new Accounts(store, outbox, (a) => a.toLowerCase());
    await accounts.putUser('u-nodns', { email: 'nodns@example.com', aliases: [], name: null });
    await accounts.grantConsent({
      userId: 'u-nodns', consent: { grantedAt: new Date().toISOString() }, imap: { host: `imap-${crypto.randomBytes(4).toString('hex')}.invalid`, port: 993, secure: true }, smtp: null,
      sealedCredentials: store.sealSecret({ imap: { user: 'x', pass: 'y' }, smtp: null }), syncSince: new Date().toISOString(),
    });
    await store.close();

    const res = await runCli(['doctor', '--user', 'u-nodns', ...cfg]);
    t.equal(res.code, 1);
    t.match(line(res.stdout, 'DNS'), /FAIL\s+DNS\s+the host name imap-[0-9a-f]+\.invalid does not resolve \((ENOTFOUND|EAI_AGAIN)\)/);
    t.match(advice(res.stdout, 'DNS'), /what to do: Check the IMAP host in the consent/);
    t.match(line(res.stdout, 'TCP'), /skipped/);
    t.match(res.stderr, /consent read from the store at .* \(no daemon running\)/);

    const ok = await runCli(['doctor', '--user', 'u-good', ...cfg]);
    t.equal(ok.code, 0, ok.stdout);
    const unknown = await runCli(['doctor', '--user', 'u-nobody', ...cfg]);
    t.equal(unknown.code, 1);
    t.match(unknown.stderr, /user u-nobody has not granted access to a mailbox/);
    const missing = await runCli(['doctor', ...cfg]);
    t.equal(missing.code, 2);
    t.match(missing.stderr, /--user USER_ID is required/);
  });
});
