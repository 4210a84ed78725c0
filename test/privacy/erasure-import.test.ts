import crypto from 'node:crypto';
import t from 'tap';
import { buildMessage, createMailbox, dovecotEnv, seedMaildir } from '../helpers/dovecot.js';
import { startDaemon, waitUntil } from '../helpers/daemon.js';
import { findAnyCaseInStoreFiles, foundAnywhere } from '../helpers/store-files.js';
import { K } from '../../daemon/store/keys.js';

/**
 * A candidate erased while an import of their older conversations runs (on the real Dovecot):
 * the import stops and writes nothing more — no thread linked again, no message stored after
 * the erasure, no import record — and the store's files hold nothing of the candidate.
 */

const letters = (n: number) => Array.from(crypto.randomBytes(n), (b) => String.fromCharCode(97 + (b % 26))).join('');

t.test('erasing a candidate stops their running import, which brings nothing back', async (t) => {
  const login = await createMailbox('erase-import');
  const token = letters(16);
  const jo = `jo.${token}@example.org`;
  const old = new Date(Date.UTC(2024, 0, 10));
  // many separate conversations with Jo, older than the sync window: only an import finds them
  await seedMaildir(login, 'INBOX', Array.from({ length: 600 }, (_, i) => ({
    raw: buildMessage({ from: `Jo <${jo}>`, to: login.address, subject: `Question ${i}`, messageId: `<q${i}-${token}@example.org>`, date: old, text: `Question number ${i}.` }),
    date: old,
  })));
  const env = dovecotEnv();
  const d = await startDaemon(t, { overrides: { sync: { tlsCaFile: env.caFile }, store: { encryptContent: false } } });
  await d.api('PUT', '/v1/users/u1', { body: { email: login.address } });
  await d.api('PUT', '/v1/candidates/cE', { body: { emails: [jo] } });
  await d.api('PUT', '/v1/users/u1/mailbox', { actingUser: 'u1', body: { imap: { host: env.host, port: env.port, secure: false, auth: { user: login.user, pass: login.pass } } } });
  await waitUntil(async () => (await d.api<{ state: string }>('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' })).body.state === 'live', 'live', 20_000);

  const started = await d.api<{ id: string }>('POST', '/v1/candidates/cE/imports', { actingUser: 'u1', body: { userId: 'u1', since: '2020-01-01T00:00:00Z' } });
  t.equal(started.status, 202);
  const id = started.body.id;
  await waitUntil(async () => {
    const job = await d.api<{ state: string; scanned: number }>('GET', `/v1/imports/${id}`, { actingUser: 'u1' });
    return job.body.state === 'running' && job.body.scanned > 0;
  }, 'the import to be running', 20_000);

  t.equal((await d.api('DELETE', '/v1/candidates/cE')).status, 204, 'erased while the import runs');
  await d.daemon.parts.imports.settled('u1');
  t.equal((await d.api('GET', `/v1/imports/${id}`, { actingUser: 'u1' })).status, 404, 'the import is gone with the candidate');
  t.same((await d.api<{ threads: unknown[] }>('GET', '/v1/candidates/cE/threads')).body.threads, [], 'no thread is linked to the erased candidate');
  t.same(await d.daemon.parts.store.keys(K.candThreadPrefix('cE')), [], 'not in the store either');
  const counts = await d.api<{ counts: { threads: number; messages: number } }>('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' });
  t.match(counts.body.counts, { threads: 0, messages: 0 }, 'no message the import found is stored');
  t.same(foundAnywhere(findAnyCaseInStoreFiles(d.storeDir, { token })), [], 'no file of the store holds the address');
  const feed = await d.api<{ events: Array<{ type: string; data: Record<string, unknown> }> }>('GET', '/v1/events?limit=1000');
  t.notOk(feed.body.events.some((e) => e.type === 'import.finished' && e.data.id === id), 'the import never reports an outcome');
});
