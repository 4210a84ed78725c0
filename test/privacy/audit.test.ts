import { Level } from 'level';
import t from 'tap';
import { startDaemon, TOKEN, waitUntil, type RunningDaemon } from '../helpers/daemon.js';
import { CANDIDATE, recruiterWithThread } from '../helpers/recruiter.js';

/**
 * The audit log through the real API, on the real Dovecot: each privacy action leaves exactly
 * one entry saying who (acting user, role, which API token — by id), when and on what; only
 * admins read it; it pages; it holds ids, never content or secrets; it survives a restart and
 * is sealed at rest when content encryption is on.
 */

interface Entry {
  id: string;
  cursor: string;
  at: string;
  action: string;
  actor: { userId: string | null; role: string; client: string };
  target: Record<string, string>;
  details?: Record<string, unknown>;
}
interface Page { entries: Entry[]; nextCursor: string }

async function allEntries(d: RunningDaemon): Promise<Entry[]> {
  const res = await d.api<Page>('GET', '/v1/audit?limit=1000', { actingUser: 'boss', role: 'admin' });
  if (res.status !== 200) throw new Error(`GET /v1/audit: ${res.status}`);
  return res.body.entries;
}

t.test('every privacy action leaves one entry: who, when, what — and no content', async (t) => {
  const { login, env, original } = await recruiterWithThread('audit');
  const d = await startDaemon(t, { overrides: { sync: { tlsCaFile: env.caFile }, store: { encryptContent: true } } });
  const started = Date.now();
  await d.api('PUT', '/v1/users/u1', { body: { email: login.address, name: 'Robin Recruiter' } });
  await d.api('PUT', '/v1/candidates/c1', { body: { emails: [CANDIDATE], name: 'Pat' } });
  const consentBody = { imap: { host: env.host, port: env.port, secure: false, auth: { user: login.user, pass: login.pass } }, syncSince: '2020-01-01T00:00:00Z' };

  // refused actions change nothing and are not recorded
  t.equal((await d.api('PUT', '/v1/users/u1/mailbox', { actingUser: 'u2', body: consentBody })).status, 403, 'another user cannot grant consent');
  t.same(await allEntries(d), [], 'a refused action leaves no entry');

  t.equal((await d.api('PUT', '/v1/users/u1/mailbox', { actingUser: 'u1', body: consentBody })).status, 202, 'consent granted');
  const thread = await waitUntil(async () => {
    const res = await d.api<{ threads: Array<{ id: string }> }>('GET', '/v1/candidates/c1/threads', { actingUser: 'u1' });
    return res.body.threads[0];
  }, 'the ATS thread to be stored', 20_000);
  t.equal((await d.api('PUT', `/v1/threads/${thread.id}/secret`, { actingUser: 'u1' })).status, 200, 'u1 makes the thread secret');
  t.equal((await d.api('PUT', `/v1/threads/${thread.id}/secret`, { actingUser: 'u1' })).status, 200, 'and again, which changes nothing');
  t.equal((await d.api('DELETE', `/v1/threads/${thread.id}/secret`, { actingUser: 'u7' })).status, 404, 'another plain user cannot see it to unset it');
  t.equal((await d.api('DELETE', `/v1/threads/${thread.id}/secret`, { actingUser: 'boss', role: 'admin' })).status, 204, 'an admin unsets it');
  t.equal((await d.api('DELETE', `/v1/threads/${thread.id}/secret`, { actingUser: 'boss', role: 'admin' })).status, 204, 'and again, which changes nothing');
  const imp = await d.api<{ id: string }>('POST', '/v1/candidates/c1/imports', { actingUser: 'u1', body: { userId: 'u1', since: '2020-01-01T00:00:00Z' } });
  t.equal(imp.status, 202, 'u1 starts an import');
  await waitUntil(async () => ['done', 'failed'].includes((await d.api<{ state: string }>('GET', `/v1/imports/${imp.body.id}`, { actingUser: 'u1' })).body.state), 'the import to finish', 20_000);
  t.equal((await d.api('DELETE', '/v1/users/u1/mailbox?purge=true', { actingUser: 'root', role: 'super_admin' })).status, 204, 'a super admin revokes with purge');

  const entries = await allEntries(d);
  t.same(entries.map((e) => e.action), ['consent.granted', 'thread.secret_set', 'thread.secret_unset', 'import.started', 'consent.revoked'], 'one entry per change, in order; refused requests and requests that change nothing leave none');
  const client = entries[0]!.actor.client;
  t.match(client, /^tok_[A-Za-z0-9_-]{12}$/, 'the API token is named by its id');
  t.ok(entries.every((e) => e.actor.client === client), 'the same token has the same id throughout');
  t.ok(d.logs.some((l) => l.includes('"mailsync started"') && l.includes(client)), 'the startup log lists the token ids, so an operator can tell which token acted');
  const [granted, secretSet, secretUnset, imported, revoked] = entries as [Entry, Entry, Entry, Entry, Entry];
  t.match(granted, { actor: { userId: 'u1', role: 'user' }, target: { userId: 'u1' }, details: { oauth2: false, smtp: false } }, 'consent: the user themselves');
  t.match(secretSet, { actor: { userId: 'u1', role: 'user' }, target: { threadId: thread.id } }, 'secrecy set by u1 on the thread');
  t.match(secretUnset, { actor: { userId: 'boss', role: 'admin' }, target: { threadId: thread.id }, details: { secretBy: 'u1' } }, 'secrecy unset by the admin, saying whose it was');
  t.match(imported, { actor: { userId: 'u1' }, target: { userId: 'u1', candidateId: 'c1', importId: imp.body.id } }, 'the import with its id');
  t.match(revoked, { actor: { userId: 'root', role: 'super_admin' }, target: { userId: 'u1' }, details: { purge: true } }, 'revocation with the purge flag');
  for (const e of entries) {
    const at = Date.parse(e.at);
    t.ok(at >= started - 1000 && at <= Date.now(), `${e.action}: at is the time of the action`);
  }
  t.equal(new Set(entries.map((e) => e.id)).size, entries.length, 'ids are unique');

  const text = JSON.stringify(entries);
  const secrets: Record<string, string> = { 'IMAP password': login.pass, 'API token': TOKEN, subject: original.raw.match(/^Subject: (.*)$/m)![1]!.trim(), 'candidate address': CANDIDATE, 'recruiter address': login.address, body: 'When are you free?' };
  for (const [kind, value] of Object.entries(secrets)) t.notOk(text.includes(value), `no ${kind} in the audit`);

  // only admins and super admins read it
  for (const who of [{}, { actingUser: 'u1' }, { actingUser: 'u1', role: 'user' }]) {
    const res = await d.api<{ error: { code: string } }>('GET', '/v1/audit', who);
    t.equal(res.status, 403, `403 for ${JSON.stringify(who)}`);
    t.equal(res.body.error.code, 'forbidden');
  }
  t.equal((await d.api('GET', '/v1/audit', { actingUser: 'root', role: 'super_admin' })).status, 200, 'a super admin reads it');
  t.equal((await d.api('GET', '/v1/audit', { token: null, actingUser: 'boss', role: 'admin' })).status, 401, 'and nobody without a token');
  t.equal((await d.api('GET', '/v1/audit?after=x', { actingUser: 'boss', role: 'admin' })).status, 400, 'a bad cursor is refused');

  // pages of two: 2, 2, 1, then nothing with a cursor that stays put
  const paged: Entry[] = [];
  const sizes: number[] = [];
  let after = '';
  for (let i = 0; i < 5; i++) {
    const page = (await d.api<Page>('GET', `/v1/audit?limit=2${after ? `&after=${after}` : ''}`, { actingUser: 'boss', role: 'admin' })).body;
    sizes.push(page.entries.length);
    paged.push(...page.entries);
    if (!page.entries.length) {
      t.equal(page.nextCursor, after, 'past the end the cursor stays where it was');
      break;
    }
    after = page.nextCursor;
  }
  t.same(sizes, [2, 2, 1, 0], 'pages of 2, 2, 1, then empty');
  t.same(paged, entries, 'paging yields the same entries in the same order');

  // the OpenAPI document describes it
  const openapi = await d.api<{ paths: Record<string, { get?: { summary?: string } }> }>('GET', '/openapi.json', { token: null });
  t.match(openapi.body.paths['/v1/audit']?.get?.summary, /admins and super admins only/, 'listed in /openapi.json');

  // survives a restart, sealed at rest, and the sequence continues after the last entry
  await d.stop();
  const db = new Level<string, Buffer>(d.storeDir, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  const raw = await db.iterator({ gte: 'aud!', lt: 'aud!\xff' }).all();
  await db.close();
  t.equal(raw.length, 5, 'five records on disk');
  t.ok(raw.every(([, v]) => v[0] === 1), 'each sealed (encryptContent is on)');
  t.ok(raw.every(([, v]) => !v.includes(Buffer.from('consent.')) && !v.includes(Buffer.from('u1'))), 'nothing readable without the key');

  const again = await startDaemon(t, { storeDir: d.storeDir, overrides: { sync: { tlsCaFile: env.caFile }, store: { encryptContent: true } } });
  t.same(await allEntries(again), entries, 'the entries are there after a restart');
  t.equal((await again.api('PUT', '/v1/users/u1/mailbox', { actingUser: 'u1', body: consentBody })).status, 202, 'consent granted again');
  const after2 = await allEntries(again);
  t.equal(after2.length, 6, 'a new entry is added, none overwritten');
  t.equal(after2[5]!.action, 'consent.granted');
  t.ok(Number(after2[5]!.cursor) > Number(entries[4]!.cursor), 'after the last one');
});
