import fs from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import type { Test } from 'tap';
import { createMailbox, dovecotEnv } from '../helpers/dovecot.js';
import { startDaemon, waitUntil, type RunningDaemon } from '../helpers/daemon.js';

/**
 * Passwords travel encrypted: implicit TLS or STARTTLS against the real Dovecot (its log says
 * which), a certificate that is not trusted is refused, and a server that offers no TLS never
 * sees the password unless the operator allowed plaintext.
 */

interface Status { state: string; lastError: { code: string; message: string } | null }

async function consentAndSettle(d: RunningDaemon, userId: string, imap: Record<string, unknown>, settled: (s: Status) => boolean): Promise<Status> {
  t.equal((await d.api('PUT', `/v1/users/${userId}`, { body: { email: `${userId}@example.com` } })).status, 200);
  const res = await d.api('PUT', `/v1/users/${userId}/mailbox`, { actingUser: userId, body: { imap } });
  t.equal(res.status, 202);
  return waitUntil(async () => {
    const s = (await d.api<Status>('GET', `/v1/users/${userId}/mailbox`, { actingUser: userId })).body;
    return settled(s) ? s : null;
  }, `mailbox of ${userId} to settle`, 20_000);
}

/**
 * Dovecot's login lines for a user written after `from` (a byte offset of its log, taken once
 * the test's own setup logins are done): "…, TLS, …" when the session was encrypted.
 */
function loginLines(user: string, from: number): string[] {
  return fs.readFileSync(dovecotEnv().log).subarray(from).toString('utf8').split('\n').filter((l) => l.includes('Login:') && l.includes(`user=<${user}>`));
}
const logSize = () => fs.statSync(dovecotEnv().log).size;

/**
 * The log offset after the setup login of `createMailbox` for `user` was written: Dovecot's log
 * process writes lines a moment after the login, so taking the size at once could still let
 * that plain setup login count as the daemon's.
 */
const logSizeAfterSetup = async (user: string) => {
  await waitUntil(() => loginLines(user, 0).length > 0, `the setup login of ${user} in the Dovecot log`);
  return logSize();
};

const strict = (env: ReturnType<typeof dovecotEnv>, caFile = env.caFile) => ({ overrides: { sync: { allowPlaintext: false, tlsCaFile: caFile } } });

t.test('STARTTLS on the plain port when plaintext is not allowed', async (t) => {
  const env = dovecotEnv();
  const login = await createMailbox('starttls');
  const from = await logSizeAfterSetup(login.user);
  const d = await startDaemon(t, strict(env));
  const s = await consentAndSettle(d, 'u-starttls', { host: env.host, port: env.port, secure: false, auth: { user: login.user, pass: login.pass } }, (x) => x.state === 'live');
  t.equal(s.state, 'live');
  const lines = await waitUntil(() => (loginLines(login.user, from).length ? loginLines(login.user, from) : null), 'the login in the Dovecot log');
  t.ok(lines.every((l) => /, TLS,/.test(l)), `every login was encrypted (${lines.length} logins)`);
});

t.test('implicit TLS on the imaps port', async (t) => {
  const env = dovecotEnv();
  const login = await createMailbox('imaps');
  const from = await logSizeAfterSetup(login.user);
  const d = await startDaemon(t, strict(env));
  const s = await consentAndSettle(d, 'u-imaps', { host: env.host, port: env.tlsPort, secure: true, auth: { user: login.user, pass: login.pass } }, (x) => x.state === 'live');
  t.equal(s.state, 'live');
  const lines = await waitUntil(() => (loginLines(login.user, from).length ? loginLines(login.user, from) : null), 'the login in the Dovecot log');
  t.ok(lines.every((l) => /, TLS,/.test(l)), `logged in over TLS (${lines.length} logins)`);
});

t.test('a certificate nobody trusts is refused, and the password is never sent', async (t) => {
  const env = dovecotEnv();
  const login = await createMailbox('untrusted');
  const from = await logSizeAfterSetup(login.user);
  const d = await startDaemon(t, strict(env, ''));
  const s = await consentAndSettle(d, 'u-untrusted', { host: env.host, port: env.tlsPort, secure: true, auth: { user: login.user, pass: login.pass } }, (x) => x.state !== 'connecting' && x.state !== 'initial_sync');
  t.not(s.state, 'live', `not live (${s.state})`);
  t.ok(s.lastError, 'lastError says why');
  t.match(s.lastError?.message ?? '', /secure|TLS|certificate/i, 'the message is about the secure connection');
  t.same(loginLines(login.user, from), [], 'Dovecot saw no login');
});

/** A server that greets and offers no STARTTLS; records whether a password ever arrived. */
async function serverWithoutTls(t: Test) {
  const received: string[] = [];
  const server = net.createServer((sock) => {
    sock.write('* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] plain-only test server ready\r\n');
    let buf = '';
    sock.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      let i: number;
      while ((i = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        received.push(line);
        const [tag, cmd] = line.split(' ');
        if (/^capability$/i.test(cmd ?? '')) sock.write(`* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n${tag} OK done\r\n`);
        else if (/^(login|authenticate)$/i.test(cmd ?? '')) sock.write(`${tag} NO refused by the test server\r\n`);
        else if (/^logout$/i.test(cmd ?? '')) sock.end(`* BYE\r\n${tag} OK bye\r\n`);
        else if (tag) sock.write(`${tag} BAD not supported here\r\n`);
      }
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as AddressInfo).port, received };
}

t.test('a server without TLS never receives the password unless plaintext is allowed', async (t) => {
  const plain = await serverWithoutTls(t);
  const d = await startDaemon(t, { overrides: { sync: { allowPlaintext: false } } });
  const pass = 'never-in-clear-7f3a';
  const s = await consentAndSettle(d, 'u-plain', { host: '127.0.0.1', port: plain.port, secure: false, auth: { user: 'robin', pass } }, (x) => !!x.lastError);
  t.not(s.state, 'live');
  t.match(s.lastError?.message ?? '', /encrypt|TLS|STARTTLS|secure/i, `lastError explains (${s.lastError?.code})`);
  t.notOk(plain.received.some((l) => l.includes(pass) || /^\S+ (login|authenticate)/i.test(l)), 'no LOGIN or AUTHENTICATE reached the server');
  t.notOk(d.logs.some((l) => l.includes(pass)), 'the password is not in the logs');
});
