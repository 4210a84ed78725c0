import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import t from 'tap';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/stack.js';
import { Keyring } from '../../daemon/store/keyring.js';
import { Store } from '../../daemon/store/store.js';
import { Outbox } from '../../daemon/store/outbox.js';
import { Accounts } from '../../daemon/store/accounts.js';

/**
 * With the default layout the key file sits inside the store directory (./data/master.key):
 * restoring must keep that key with the store it puts in place, or nothing could be read.
 */
t.test('restore keeps a key file that lives inside the store directory', async (t) => {
  const dir = tempDir(t);
  const store = path.join(dir, 'data');
  const keyFile = path.join(store, 'master.key');
  const config = path.join(dir, 'mailsync.yaml');
  fs.writeFileSync(config, YAML.stringify({ store: { path: store, keyFile } }));
  const { keyring } = Keyring.load({ keyFile });
  const key = keyring.key(1);
  const s = await Store.open({ path: store, keyring, encryptContent: true });
  const outbox = new Outbox(s, { push: false });
  await outbox.init();
  const accounts = new Accounts(s, outbox, (a) => a);
  await accounts.putUser('u1', { email: 'robin@example.com', aliases: [], name: null });
  await accounts.grantConsent({
    userId: 'u1', consent: { grantedAt: new Date().toISOString() }, imap: { host: '127.0.0.1', port: 993, secure: true }, smtp: null,
    sealedCredentials: s.sealSecret({ imap: { user: 'robin', pass: 'pw' }, smtp: null }), syncSince: new Date().toISOString(),
  });
  await s.close();

  const backup = path.join(dir, 'backup');
  const b = await runCli(['backup', backup, '--config', config]);
  t.equal(b.code, 0, b.stderr);
  const r = await runCli(['restore', backup, '--config', config]);
  t.equal(r.code, 0, r.stderr);
  t.equal(fs.readFileSync(keyFile, 'utf8').trim(), key.toString('hex'), 'the same key is in place after the restore');
  t.equal(fs.statSync(keyFile).mode & 0o777, 0o600, 'still readable by the owner only');
  const users = await runCli(['users', '--config', config]);
  t.match(users.stdout, /u1\s+robin@example\.com\s+connecting/, 'the restored store reads with it');
  const restored = await Store.open({ path: store, masterKey: key, encryptContent: true });
  t.teardown(() => restored.close());
  const mbx = await new Accounts(restored, new Outbox(restored, { push: false }), (a) => a).getMailbox('u1');
  t.same(restored.openSecret(mbx!.sealedCredentials), { imap: { user: 'robin', pass: 'pw' }, smtp: null }, 'and the sealed credentials open');
});

t.test('a backup from before a key rotation needs the key file from before it', async (t) => {
  const dir = tempDir(t);
  const store = path.join(dir, 'data');
  const keyFile = path.join(dir, 'master.key');
  const config = path.join(dir, 'mailsync.yaml');
  fs.writeFileSync(config, YAML.stringify({ store: { path: store, keyFile } }));
  const { keyring } = Keyring.load({ keyFile });
  const s = await Store.open({ path: store, keyring, encryptContent: true });
  const outbox = new Outbox(s, { push: false });
  await outbox.init();
  const accounts = new Accounts(s, outbox, (a) => a);
  await accounts.putUser('u1', { email: 'robin@example.com', aliases: [], name: null });
  await accounts.grantConsent({
    userId: 'u1', consent: { grantedAt: new Date().toISOString() }, imap: { host: '127.0.0.1', port: 993, secure: true }, smtp: null,
    sealedCredentials: s.sealSecret({ imap: { user: 'robin', pass: 'pw' }, smtp: null }), syncSince: new Date().toISOString(),
  });
  await s.close();
  const backup = path.join(dir, 'backup');
  t.equal((await runCli(['backup', backup, '--config', config])).code, 0);
  const keptKeyFile = path.join(dir, 'master.key.before-rotation');
  fs.copyFileSync(keyFile, keptKeyFile);
  const rotated = await runCli(['keys', 'rotate', '--config', config]);
  t.equal(rotated.code, 0, rotated.stderr);

  const refused = await runCli(['restore', backup, '--config', config]);
  t.equal(refused.code, 1, 'refused with the rotated key file');
  t.match(refused.stderr, /the backup holds values sealed under key 1, which the key file .* no longer holds .*put back the key file kept from the time of the backup/);
  t.notOk(fs.readdirSync(dir).some((f) => f.includes('.restoring-')), 'no half-restored store is left');

  fs.copyFileSync(keptKeyFile, keyFile);
  const restored = await runCli(['restore', backup, '--config', config]);
  t.equal(restored.code, 0, restored.stderr);
  const status = await runCli(['keys', 'status', '--config', config]);
  t.match(status.stdout, /^KEY\s+CREATED\s+CURRENT\s+SEALED VALUES\n1\s+-\s+yes\s+1\n/, 'with the old key file the backup reads again');
});
