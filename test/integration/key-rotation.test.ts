import fs from 'node:fs';
import t from 'tap';
import { appendMessage, buildMessage, createMailbox, dovecotEnv, seedMaildir } from '../helpers/dovecot.js';
import { TOKEN, waitUntil } from '../helpers/daemon.js';
import { runCli, startServe, writeServeConfig, type ServeSetup } from '../helpers/cli.js';

/**
 * `mailsync keys rotate` as an operator runs it: against `mailsync serve` syncing a real Dovecot
 * mailbox (new mail keeps arriving and being served while the rotation runs), and with the
 * daemon stopped; then the restarted daemon logs in to Dovecot with the re-sealed credentials.
 */

const CANDIDATE = 'kim.candidate@example.org';

// four daemon starts and a dozen CLI runs: more than the default minute or two on a busy machine
t.setTimeout(300_000);

interface KeyStatus {
  source: string;
  current: number;
  keys: Array<{ id: number; current: boolean; sealed: number }>;
  rotation: { state: string; resealed: number; toReseal: number; newKeyId: number } | null;
}
interface Thread { messages: Array<{ messageId: string; text: string }> }

function client(setup: ServeSetup) {
  return async <T = Record<string, unknown>>(method: string, url: string, body?: unknown, actingUser?: string): Promise<{ status: number; body: T }> => {
    const res = await fetch(`${setup.apiUrl}${url}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, ...(actingUser ? { 'x-acting-user': actingUser } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: res.status, body: (await res.json().catch(() => null)) as T };
  };
}

/** Every key (hex) the key file holds now, whatever its format. */
function keysInFile(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8').trim();
  return text.startsWith('{') ? (JSON.parse(text) as { keys: Array<{ key: string }> }).keys.map((k) => k.key) : [text];
}

t.test('keys rotate while the daemon syncs a live mailbox, then with the daemon stopped', async (t) => {
  const env = dovecotEnv();
  const login = await createMailbox('keys');
  const originalId = '<kr-0@ats.example.net>';
  await appendMessage(login, 'Sent', buildMessage({ from: login.address, to: CANDIDATE, subject: 'Interview', messageId: originalId, text: 'When are you free?' }), ['\\Seen']);
  // a long conversation, so that the rotation has many batches to go through
  await seedMaildir(login, 'INBOX', Array.from({ length: 120 }, (_, i) => ({
    raw: buildMessage({ from: CANDIDATE, to: login.address, subject: 'Re: Interview', messageId: `<kr-${i + 1}@example.org>`, inReplyTo: originalId, references: originalId, text: `Reply number ${i + 1}.` }),
  })));
  const setup = await writeServeConfig(t, { sync: { tlsCaFile: env.caFile } });
  const cfg = ['--config', setup.configFile];
  const top = t;
  let serve = await startServe(t, setup);
  const api = client(setup);
  await api('PUT', '/v1/users/u1', { email: login.address });
  await api('PUT', '/v1/candidates/c1', { emails: [CANDIDATE] });
  t.equal((await api('PUT', '/v1/users/u1/mailbox', { imap: { host: env.host, port: env.port, secure: false, auth: { user: login.user, pass: login.pass } }, syncSince: '2020-01-01T00:00:00Z' }, 'u1')).status, 202);
  const status = async () => (await api<{ state: string; counts: { messages: number } }>('GET', '/v1/users/u1/mailbox', undefined, 'u1')).body;
  await waitUntil(async () => (await status()).state === 'live' && (await status()).counts.messages === 121, 'the conversation synced', 30_000);
  const threadId = (await api<{ threads: Array<{ id: string }> }>('GET', '/v1/candidates/c1/threads')).body.threads[0]!.id;
  const thread = async () => (await api<Thread>('GET', `/v1/threads/${threadId}`)).body;
  const seenKeys = new Set(keysInFile(setup.keyFile));
  t.equal(fs.readFileSync(setup.keyFile, 'utf8').trim().length, 64, 'the daemon started with a one-line key file');

  const before = JSON.parse((await runCli(['keys', 'status', '--json', ...cfg])).stdout) as KeyStatus;
  t.same(before.keys.map((k) => [k.id, k.current]), [[1, true]], 'before: key 1, current');
  const sealedBefore = before.keys[0]!.sealed;
  t.ok(sealedBefore > 240, `${sealedBefore} sealed values (credentials, messages, sources, the thread, events)`);

  await t.test('live: new mail is synced and served while the rotation runs', async (t) => {
    const rotating = runCli(['keys', 'rotate', '--batch-size', '5', '--pause-ms', '60', ...cfg], { timeoutMs: 180_000 });
    await waitUntil(async () => {
      const r = (await api<KeyStatus>('GET', '/v1/admin/keys')).body.rotation;
      return r?.state === 'running' && r.resealed > 0;
    }, 'the rotation to be under way');
    for (const i of [1, 2]) {
      await appendMessage(login, 'INBOX', buildMessage({ from: CANDIDATE, to: login.address, subject: 'Re: Interview', messageId: `<kr-live-${i}@example.org>`, inReplyTo: originalId, text: `Sent during the rotation, ${i}.` }));
    }
    const served = await waitUntil(async () => {
      const msgs = (await thread()).messages;
      return msgs.find((m) => m.messageId === '<kr-live-2@example.org>') && msgs.find((m) => m.messageId === '<kr-live-1@example.org>') ? msgs : null;
    }, 'the new replies to be served');
    const during = (await api<KeyStatus>('GET', '/v1/admin/keys')).body.rotation!;
    t.equal(during.state, 'running', `the new replies were synced and served while the rotation ran (${during.resealed} of ${during.toReseal} re-sealed)`);
    t.match(served.find((m) => m.messageId === '<kr-live-2@example.org>')!.text, /Sent during the rotation, 2\./, 'their text is readable');
    t.equal(served.length, 123);
    t.match(served[1]!.text, /Reply number \d+\./, 'older messages are readable too, whichever key they are under');

    const res = await rotating;
    t.equal(res.code, 0, res.stderr);
    t.match(res.stdout, /key 2 is current; \d+ sealed value\(s\) re-sealed under it; key 1 retired from the key file /);
    t.match(res.stderr, /rotation running since .*: \d+ of \d+ value\(s\) re-sealed under key 2/, 'it showed the progress');
    t.match(res.stderr, /rotated in the running daemon at http:\/\/127\.0\.0\.1:/);
    for (const k of [...seenKeys, ...keysInFile(setup.keyFile)]) t.notOk(res.stdout.includes(k) || res.stderr.includes(k), 'no key in the output');
  });

  await t.test('afterwards every sealed value is under key 2 and key 1 is gone from the key file', async (t) => {
    const after = JSON.parse((await runCli(['keys', 'status', '--json', ...cfg])).stdout) as KeyStatus;
    t.same(after.keys.map((k) => [k.id, k.current]), [[2, true]], 'one key left: 2, current');
    t.ok(after.keys[0]!.sealed >= sealedBefore + 4, `all ${after.keys[0]!.sealed} sealed values are under key 2 (new mail included)`);
    t.equal(after.rotation?.state, 'done');
    const doc = JSON.parse(fs.readFileSync(setup.keyFile, 'utf8')) as { format: string; current: number; keys: Array<{ id: number }> };
    t.equal(doc.format, 'mailsync-keyring');
    t.same([doc.current, doc.keys.map((k) => k.id)], [2, [2]]);
    const text = fs.readFileSync(setup.keyFile, 'utf8');
    for (const k of seenKeys) t.notOk(text.includes(k), 'key 1 is not in the file');
    t.equal(fs.statSync(setup.keyFile).mode & 0o777, 0o600, 'mode 0600');
    const table = await runCli(['keys', 'status', ...cfg]);
    t.match(table.stdout, /^KEY\s+CREATED\s+CURRENT\s+SEALED VALUES\n2\s+\d{4}-\d\d-\d\dT\S+\s+yes\s+\d+\n/);
  });

  await t.test('a restart logs in to Dovecot with the re-sealed credentials and keeps syncing', async (t) => {
    for (const k of keysInFile(setup.keyFile)) seenKeys.add(k);
    await serve.stop();
    const offset = fs.statSync(env.log).size;
    serve = await startServe(top, setup);
    await waitUntil(() => fs.readFileSync(env.log, 'utf8').slice(offset).includes(`Login: user=<${login.user}>`), 'a login to Dovecot after the restart');
    await waitUntil(async () => (await status()).state === 'live', 'live again');
    await appendMessage(login, 'INBOX', buildMessage({ from: CANDIDATE, to: login.address, subject: 'Re: Interview', messageId: '<kr-after@example.org>', inReplyTo: originalId, text: 'After the restart.' }));
    await waitUntil(async () => (await thread()).messages.some((m) => m.messageId === '<kr-after@example.org>'), 'new mail after the restart');
    t.equal((await thread()).messages.length, 124);
  });

  await t.test('with the daemon stopped the command rotates the store itself', async (t) => {
    await serve.stop();
    const res = await runCli(['keys', 'rotate', ...cfg]);
    t.equal(res.code, 0, res.stderr);
    t.match(res.stdout, /key 3 is current; \d+ sealed value\(s\) re-sealed under it; key 2 retired/);
    t.match(res.stderr, /rotated in the store at .* \(no daemon running\)/);
    const after = JSON.parse((await runCli(['keys', 'status', '--json', ...cfg])).stdout) as KeyStatus;
    t.same(after.keys.map((k) => [k.id, k.current]), [[3, true]]);
    for (const k of seenKeys) t.notOk(fs.readFileSync(setup.keyFile, 'utf8').includes(k), 'no earlier key in the file');
    const offset = fs.statSync(env.log).size;
    serve = await startServe(top, setup);
    await waitUntil(() => fs.readFileSync(env.log, 'utf8').slice(offset).includes(`Login: user=<${login.user}>`), 'a login to Dovecot after the offline rotation');
    await waitUntil(async () => (await status()).state === 'live', 'live');
    t.equal((await thread()).messages.length, 124, 'every message is still readable');
    for (const k of [...seenKeys, ...keysInFile(setup.keyFile)]) t.notOk(serve.output().includes(k), 'no key in the daemon\'s log');
  });
});
