import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { appendMessage, createMailbox, dovecotEnv } from '../helpers/dovecot.js';
import { startReceiver, waitUntil, WEBHOOK_SECRET } from '../helpers/daemon.js';
import { spawnDaemon, writeConfig, type DaemonProcess } from '../helpers/daemon-process.js';
import { tempDir } from '../helpers/stack.js';
import { atsOriginal, candidateReply, messageIdOf } from '../helpers/recruiter.js';

/**
 * Signals to the real process. SIGTERM: the API stops accepting, the delivery in flight gets
 * its bounded drain, the IMAP session logs out, the store closes, exit 0 — and the event whose
 * delivery was cut short is delivered after the next start. A second signal exits at once.
 */

t.setTimeout(180_000);

t.test('SIGTERM drains and exits 0; a second signal exits at once', async (t) => {
  const login = await createMailbox('shutdown');
  const env = dovecotEnv();
  const original = atsOriginal(login.address);
  await appendMessage(login, 'Sent', original.raw, ['\\Seen']);
  let hang = new Set<string>();
  const receiver = await startReceiver(t, (w) => (hang.has(messageIdOf(w) ?? '') ? 'hang' : 200));
  const dir = tempDir(t);
  const logFile = path.join(dir, 'daemon.log');
  const configFile = writeConfig(dir, { webhooks: { url: receiver.url, secret: WEBHOOK_SECRET, timeoutMs: 120_000 }, sync: { tlsCaFile: env.caFile } });
  const start = () => spawnDaemon(t, configFile, logFile);
  const live = (d: DaemonProcess) => waitUntil(async () => (await d.api<{ state: string }>('GET', '/v1/users/u1/mailbox', undefined, 'u1')).body.state === 'live', 'live');
  const msgs = (d: DaemonProcess) => d.logs.map((l) => (JSON.parse(l) as { msg: string }).msg);

  let d = await start();
  await d.api('PUT', '/v1/users/u1', { email: login.address });
  await d.api('PUT', '/v1/users/u1/mailbox', { imap: { host: env.host, port: env.port, secure: false, auth: { user: login.user, pass: login.pass } }, syncSince: '2020-01-01T00:00:00Z' }, 'u1');
  await live(d);

  const stuck = candidateReply(login.address, original.messageId, 'in-flight');
  hang = new Set([stuck.messageId]);
  await appendMessage(login, 'INBOX', stuck.raw);
  await waitUntil(() => receiver.attempts.some((w) => messageIdOf(w) === stuck.messageId), 'the delivery in flight');
  const logoutsBefore = (fs.readFileSync(env.log, 'utf8').match(new RegExp(`imap\\(${login.user}\\).*Logged out`, 'g')) ?? []).length;

  await t.test('first SIGTERM: stop accepting, drain, log out, exit 0', async (t) => {
    const signalledAt = Date.now();
    d.child.kill('SIGTERM');
    await waitUntil(async () => {
      try {
        await fetch(`${d.apiUrl}/healthz`);
        return false;
      } catch {
        return true;
      }
    }, 'the API to stop accepting connections', 10_000, 10);
    const { code, signal } = await d.exited;
    t.same({ code, signal }, { code: 0, signal: null }, `exit 0 after ${Date.now() - signalledAt} ms`);
    const m = msgs(d);
    t.ok(m.includes('stopping: finishing work in flight'), 'the stop was logged');
    t.ok(m.indexOf('mailsync stopped') > m.indexOf('stopping: finishing work in flight'), 'and finished in order');
    const logouts = (fs.readFileSync(env.log, 'utf8').match(new RegExp(`imap\\(${login.user}\\).*Logged out`, 'g')) ?? []).length;
    t.ok(logouts > logoutsBefore, 'the IMAP session logged out (Dovecot says "Logged out")');
    t.equal(receiver.received.filter((w) => messageIdOf(w) === stuck.messageId).length, 0, 'the delivery in flight did not complete');
  });

  await t.test('the event cut short is delivered after the next start', async (t) => {
    hang = new Set();
    d = await start();
    const w = await receiver.waitFor((x) => messageIdOf(x) === stuck.messageId, 'the redelivered event');
    const first = receiver.attempts.find((x) => messageIdOf(x) === stuck.messageId)!;
    t.equal(w.body.id, first.body.id, 'the same event id as the attempt cut short (the receiver can de-duplicate)');
    await live(d);
  });

  await t.test('a second signal exits at once', async (t) => {
    const next = candidateReply(login.address, original.messageId, 'second');
    hang = new Set([next.messageId]);
    await appendMessage(login, 'INBOX', next.raw);
    await waitUntil(() => receiver.attempts.some((w) => messageIdOf(w) === next.messageId), 'another delivery in flight');
    d.child.kill('SIGTERM');
    await waitUntil(() => msgs(d).includes('stopping: finishing work in flight'), 'the first signal handled');
    d.child.kill('SIGINT');
    const { code } = await d.exited;
    t.equal(code, 1, 'exit status 1: stopped without finishing');
    t.ok(msgs(d).includes('second signal: exiting at once'), 'the second signal was logged');
    t.notOk(msgs(d).includes('mailsync stopped'), 'it did not wait for the drain');
  });
});
