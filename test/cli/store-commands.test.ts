import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import t from 'tap';
import { createMailbox, dovecotEnv } from '../helpers/dovecot.js';
import { startReceiver, TOKEN, waitUntil, WEBHOOK_SECRET } from '../helpers/daemon.js';
import { runCli, startServe, writeServeConfig } from '../helpers/cli.js';
import { tempDir } from '../helpers/stack.js';

/**
 * users, events list/redeliver, backup and restore as an operator runs them: against a daemon
 * running in its own process (the commands go through its API, since it holds the store) and
 * against the store with the daemon stopped (the commands open it themselves).
 */

t.test('store commands while the daemon runs and after it stopped', async (t) => {
  const env = dovecotEnv();
  const good = await createMailbox('ops-live');
  const bad = await createMailbox('ops-bad');
  let accept = false;
  const receiver = await startReceiver(t, () => (accept ? 200 : 500));
  const setup = await writeServeConfig(t, {
    webhooks: { url: receiver.url, secret: WEBHOOK_SECRET, retry: { attempts: 1, initialDelayMs: 10, maxDelayMs: 10 } },
    sync: { tlsCaFile: env.caFile },
  });
  const cfg = ['--config', setup.configFile];
  let serve = await startServe(t, setup);
  const api = async (method: string, url: string, body?: unknown, actingUser?: string) => {
    const res = await fetch(`${setup.apiUrl}${url}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, ...(actingUser ? { 'x-acting-user': actingUser } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: res.status, body: (await res.json().catch(() => null)) as Record<string, unknown> };
  };
  const consent = (account: { user: string; pass: string }, pass: string) => ({ imap: { host: env.host, port: env.port, secure: false, auth: { user: account.user, pass } }, syncSince: '2020-01-01T00:00:00Z' });

  await api('PUT', '/v1/users/u-live', { email: good.address, name: 'Robin Recruiter' });
  await api('PUT', '/v1/users/u-bad', { email: bad.address });
  await api('PUT', '/v1/users/u-none', { email: 'nobody@example.com' });
  t.equal((await api('PUT', '/v1/users/u-live/mailbox', consent(good, good.pass), 'u-live')).status, 202);
  t.equal((await api('PUT', '/v1/users/u-bad/mailbox', consent(bad, 'not-the-password'), 'u-bad')).status, 202);
  await waitUntil(async () => (await api('GET', '/v1/users/u-live/mailbox', undefined, 'u-live')).body.state === 'live', 'u-live to be live');
  await waitUntil(async () => (await api('GET', '/v1/users/u-bad/mailbox', undefined, 'u-bad')).body.state === 'auth_failed', 'u-bad to be auth_failed');

  await t.test('users: the table through the running daemon', async (t) => {
    const res = await runCli(['users', ...cfg]);
    t.equal(res.code, 0, res.stderr);
    const line = (user: string) => res.stdout.split('\n').find((l) => l.startsWith(`${user} `)) ?? '';
    t.match(line('u-live'), /\blive\b/, 'u-live is live');
    t.match(line('u-live'), /INBOX \(checked \d+s ago\)/, 'with its folders as the running worker checked them');
    t.match(line('u-bad'), /auth_failed.*auth_failed: The mail server refused the login/, 'u-bad is auth_failed, with the reason');
    t.match(line('u-none'), /no consent/);
    t.match(res.stdout, /outbox: \d+ event\(s\) to deliver; relay: 0 message\(s\) queued/);
    t.match(res.stderr, /read from the running daemon at http:\/\/127\.0\.0\.1:/, 'says it asked the daemon');
    t.notOk(res.stdout.includes(good.pass), 'no password in the output');
    const json = await runCli(['users', '--json', ...cfg]);
    const snap = JSON.parse(json.stdout) as { source: string; mailboxes: Array<{ userId: string; state: string }> };
    t.equal(snap.source, 'daemon');
    t.same(snap.mailboxes.map((m) => [m.userId, m.state]), [['u-bad', 'auth_failed'], ['u-live', 'live'], ['u-none', 'none']]);
  });

  let failedIds: string[] = [];
  await t.test('events list --failed and redeliver through the daemon', async (t) => {
    // the receiver refused everything and attempts is 1: the state events failed for good
    const res = await waitUntil(async () => {
      const r = await runCli(['events', 'list', '--failed', '--json', ...cfg]);
      const events = r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id: string; type: string; delivery: { status: string } });
      return events.length >= 3 ? events : null;
    }, "three failed events (initial_sync and live of u-live, auth_failed of u-bad)", 30_000);
    t.ok(res.every((e) => e.delivery.status === 'failed' && e.type === 'mailbox.state_changed'), 'failed mailbox.state_changed events are listed');
    failedIds = res.map((e) => e.id);
    const table = await runCli(['events', 'list', '--failed', ...cfg]);
    t.match(table.stdout, /^CURSOR\s+ID\s+TYPE/, 'a table with a header');
    t.match(table.stdout, /mailbox\.state_changed\s+\S+\s+failed\s+1\s+the receiver answered HTTP 500/, 'shows the attempts and the last error');

    accept = true;
    const first = failedIds[0]!;
    const one = await runCli(['events', 'redeliver', first, ...cfg]);
    t.equal(one.code, 0, one.stderr);
    t.match(one.stdout, /1 event\(s\) queued for redelivery/);
    await receiver.waitFor((w) => w.body.id === first, `redelivery of ${first}`);
    t.pass('the receiver got the redelivered event');
    const unknown = await runCli(['events', 'redeliver', 'evt_00000000zzzz', ...cfg]);
    t.equal(unknown.code, 1, 'an unknown id fails');
    t.match(unknown.stderr, /no event evt_00000000zzzz/);
    accept = false;
  });

  const backupDir = path.join(tempDir(t), 'backup-1');
  await t.test('backup while the daemon runs; restore refuses while it runs', async (t) => {
    const res = await runCli(['backup', backupDir, ...cfg]);
    t.equal(res.code, 0, res.stderr);
    t.match(res.stdout, /backup of \d+ entries written/);
    t.match(res.stderr, /running daemon/);
    const manifest = JSON.parse(fs.readFileSync(path.join(backupDir, 'manifest.json'), 'utf8')) as { entries: number; format: string };
    t.equal(manifest.format, 'mailsync-backup');
    t.ok(manifest.entries > 5, 'the backup holds the store\'s entries');
    t.equal((fs.statSync(path.join(backupDir, 'mailsync-backup.ndjson.gz')).mode & 0o777), 0o600, 'only the owner can read it');
    const again = await runCli(['backup', backupDir, ...cfg]);
    t.equal(again.code, 1, 'a backup never overwrites another');
    t.match(again.stderr, /is not empty/);
    const restore = await runCli(['restore', backupDir, ...cfg]);
    t.equal(restore.code, 1);
    t.match(restore.stderr, /in use by a running mailsync: stop the daemon first/);
  });

  // a change after the backup, to see the restore bring back the earlier point in time
  await api('PUT', '/v1/users/u-later', { email: 'later@example.com' });
  t.equal(await serve.stop(), 0, 'the daemon stops cleanly');

  await t.test('with the daemon stopped the commands open the store', async (t) => {
    const res = await runCli(['users', ...cfg]);
    t.equal(res.code, 0, res.stderr);
    t.match(res.stderr, /read from the store at .* \(no daemon running\)/);
    t.match(res.stdout, /u-later/);
    t.match(res.stdout.split('\n').find((l) => l.startsWith('u-bad ')) ?? '', /auth_failed/);
    const failed = await runCli(['events', 'list', '--failed', ...cfg]);
    t.equal(failed.code, 0);
    t.ok(failedIds.slice(1).every((id) => failed.stdout.includes(id)), 'the other failed events are still listed');
    t.notOk(failed.stdout.includes(failedIds[0]!), 'the redelivered one is not');
    const re = await runCli(['events', 'redeliver', '--failed', ...cfg]);
    t.equal(re.code, 0, re.stderr);
    t.match(re.stdout, /queued for redelivery \(delivered when the daemon starts\)/);
  });

  await t.test('restore: the backup comes back, the replaced store is kept', async (t) => {
    const otherKey = path.join(tempDir(t), 'other.key');
    fs.writeFileSync(otherKey, `${'ab'.repeat(32)}\n`);
    const wrongKeyConfig = path.join(setup.dir, 'wrong-key.yaml');
    const doc = YAML.parse(fs.readFileSync(setup.configFile, 'utf8')) as { store: { keyFile: string } };
    doc.store.keyFile = otherKey;
    fs.writeFileSync(wrongKeyConfig, YAML.stringify(doc));
    const refused = await runCli(['restore', backupDir, '--config', wrongKeyConfig]);
    t.equal(refused.code, 1, 'refused under another key');
    t.match(refused.stderr, /made under another encryption key/);

    const res = await runCli(['restore', backupDir, ...cfg]);
    t.equal(res.code, 0, res.stderr);
    t.match(res.stdout, /restored \d+ entries/);
    const kept = /kept at (\S+)/.exec(res.stdout)?.[1];
    t.ok(kept && fs.existsSync(path.join(kept, 'CURRENT')), 'the replaced store is kept beside it');
    const users = await runCli(['users', ...cfg]);
    t.notMatch(users.stdout, /u-later/, 'the user added after the backup is gone');
    t.match(users.stdout, /u-live/);
  });

  await t.test('the daemon starts on the restored store and delivers the queued events', async (t) => {
    accept = true;
    serve = await startServe(t, setup);
    // the restored store is from before the store-mode redelivery: redeliver again through the daemon
    const re = await runCli(['events', 'redeliver', '--failed', ...cfg]);
    t.equal(re.code, 0, re.stderr);
    for (const id of failedIds.slice(1)) await receiver.waitFor((w) => w.body.id === id, `delivery of ${id}`);
    t.pass('every failed event reached the receiver');
    const live = await waitUntil(async () => (await api('GET', '/v1/users/u-live/mailbox', undefined, 'u-live')).body.state === 'live', 'u-live live again on the restored store');
    t.ok(live, 'the restored mailbox syncs again: its credentials were restored and readable');
  });
});
