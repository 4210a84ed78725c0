import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Level } from 'level';
import pino from 'pino';
import t, { type Test } from 'tap';
import { Keyring } from '../../daemon/store/keyring.js';
import { KeyRotation } from '../../daemon/store/key-rotation.js';
import { Store } from '../../daemon/store/store.js';
import { MailsyncError } from '../../daemon/errors.js';
import { tempDir } from '../helpers/stack.js';

/**
 * The keyring and rotation on a real LevelDB, without the daemon: the existing one-key file
 * format keeps working (values sealed before keyrings existed included), rotation re-seals
 * everything while other writes go on without losing any, and a key file that is damaged,
 * missing or not this store's is refused with an error naming it, before anything is written.
 */

const silent = pino({ level: 'silent' });

/** A value sealed exactly as mailsync sealed content before keyrings: `1 | iv | tag | ct` under HKDF(master, 'mailsync:content'). */
function legacySeal(master: Buffer, plain: Buffer): Buffer {
  const key = Buffer.from(crypto.hkdfSync('sha256', master, Buffer.alloc(0), 'mailsync:content', 32));
  const iv = crypto.randomBytes(12);
  const c = crypto.createCipheriv('aes-256-gcm', key, iv);
  const ct = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([Buffer.from([1]), iv, c.getAuthTag(), ct]);
}

function setup(t: Test) {
  const dir = tempDir(t);
  return { dir, storePath: path.join(dir, 'store'), keyFile: path.join(dir, 'master.key') };
}

t.test('an existing one-line key file and values sealed before keyrings keep working; rotation re-seals them', async (t) => {
  const { storePath, keyFile } = setup(t);
  const master = crypto.randomBytes(32);
  fs.writeFileSync(keyFile, `${master.toString('hex')}\n`, { mode: 0o600 });
  const { keyring } = Keyring.load({ keyFile }, { storePath });
  t.same(keyring.describe(), [{ id: 1, createdAt: null, current: true }], 'the one-line file is key 1');
  const store = await Store.open({ path: storePath, keyring, encryptContent: true });
  t.teardown(() => store.close());
  // what an older mailsync wrote: content in the version-1 format
  await store.db.put('msg!legacy', Buffer.concat([Buffer.from([1]), legacySeal(master, Buffer.from(JSON.stringify({ text: 'written before keyrings' })))]));
  t.same(await store.get('msg!legacy'), { text: 'written before keyrings' }, 'a value sealed before keyrings opens');
  await store.batch().put('msg!new', { text: 'new' }).put('mbx!u1', { userId: 'u1', sealedCredentials: store.sealSecret({ imap: { user: 'u', pass: 'imap-pass-c41d' } }) }).put('user!u1', { id: 'u1' }).write();
  const hashBefore = store.idHasher.hash('<id@example.org>');
  const rotation = new KeyRotation(store, silent);
  t.same((await rotation.count()).sealed, { 1: 3 }, 'three values sealed under key 1 (the user record is not sealed)');

  const done = await rotation.run({ batchSize: 1 });
  t.equal(done.state, 'done');
  t.equal(done.newKeyId, 2);
  t.same(done.retiredKeyIds, [1]);
  t.equal(done.resealed, 3);
  t.same((await rotation.count()).sealed, { 2: 3 }, 'everything is under key 2');
  t.same(await store.get('msg!legacy'), { text: 'written before keyrings' });
  t.same(store.openSecret((await store.get<{ sealedCredentials: string }>('mbx!u1'))!.sealedCredentials), { imap: { user: 'u', pass: 'imap-pass-c41d' } });
  t.equal(store.idHasher.hash('<id@example.org>'), hashBefore, 'id hashes (pending references) are unchanged');
  const text = fs.readFileSync(keyFile, 'utf8');
  const doc = JSON.parse(text) as { current: number; keys: Array<{ id: number }> };
  t.equal(doc.current, 2);
  t.same(doc.keys.map((k) => k.id), [2], 'key 1 is gone from the file');
  t.notOk(text.includes(master.toString('hex')), 'not a byte of key 1 is left in it');
  t.equal(fs.statSync(keyFile).mode & 0o777, 0o600, 'the key file stays 0600');
  t.same(fs.readdirSync(path.dirname(keyFile)).filter((f) => f.includes('.tmp-')), [], 'no temporary file left beside it');
  await store.close();

  const again = await Store.open({ path: storePath, keyring: Keyring.load({ keyFile }, { storePath }).keyring, encryptContent: true });
  t.teardown(() => again.close());
  t.same(await again.get('msg!legacy'), { text: 'written before keyrings' }, 'the rotated store opens with the new key file');
  t.equal(again.idHasher.hash('<id@example.org>'), hashBefore, 'and hashes ids as before');
});

t.test('writes during a rotation are never lost nor left under the old key', async (t) => {
  const { storePath, keyFile } = setup(t);
  const { keyring } = Keyring.load({ keyFile }, { storePath });
  const store = await Store.open({ path: storePath, keyring, encryptContent: true });
  t.teardown(() => store.close());
  const N = 200;
  const batch = store.batch();
  for (let i = 0; i < N; i++) batch.put(`thr!t${String(i).padStart(4, '0')}`, { version: 0 });
  await batch.write();
  const rotation = new KeyRotation(store, silent);
  // once the rotation has re-sealed its first batch, every record is rewritten, all writes in
  // flight at once (as the sync, the API and the relay make them) while the rotation walks on
  const writes: Array<Promise<void>> = [];
  const result = await rotation.run({
    batchSize: 3,
    onProgress: (s) => {
      if (s.resealed === 0 || writes.length) return;
      for (let i = 0; i < N; i++) writes.push(store.batch().put(`thr!t${String(i).padStart(4, '0')}`, { version: 1 }).write());
    },
  });
  await Promise.all(writes);
  t.equal(writes.length, N, 'the writes were made during the rotation');
  t.equal(result.state, 'done');
  const stale: string[] = [];
  for (let i = 0; i < N; i++) {
    const key = `thr!t${String(i).padStart(4, '0')}`;
    if ((await store.get<{ version: number }>(key))?.version !== 1) stale.push(key);
  }
  t.same(stale, [], 'no record was set back to its value from before the writes');
  t.same((await rotation.count()).sealed, { 2: N }, 'every value is under the new key');
});

t.test('while a rotation batch holds writes back, a write waits for it, and the batch waits for writes in flight', async (t) => {
  const { storePath, keyFile } = setup(t);
  const store = await Store.open({ path: storePath, keyring: Keyring.load({ keyFile }, { storePath }).keyring, encryptContent: true });
  t.teardown(() => store.close());
  let open!: () => void;
  const seen: string[] = [];
  const held = store.withWritesPaused(async () => {
    seen.push('batch starts');
    await new Promise<void>((r) => (open = r));
    seen.push('batch ends');
  });
  await new Promise((r) => setImmediate(r));
  const write = store.batch().put('thr!t1', { v: 1 }).write().then(() => seen.push('write done'));
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  t.equal(store.db.getSync('thr!t1'), undefined, 'the write has not landed while the batch runs');
  open();
  await Promise.all([held, write]);
  t.same(seen, ['batch starts', 'batch ends', 'write done'], 'it lands after the batch');

  const inFlight = store.batch().put('thr!t2', { v: 2 }).write();
  const next = store.withWritesPaused(async () => store.db.getSync('thr!t2'));
  t.ok(await next, 'a batch starting while a write is in flight sees that write');
  await inFlight;
});

t.test('a damaged, missing or foreign key file: an error naming it, the store untouched', async (t) => {
  const { storePath, keyFile } = setup(t);
  const store = await Store.open({ path: storePath, keyring: Keyring.load({ keyFile }, { storePath }).keyring, encryptContent: true });
  await store.batch().put('mbx!u1', { userId: 'u1', sealedCredentials: store.sealSecret({ imap: { user: 'u', pass: 'p' } }) }).write();
  await store.close();
  const good = fs.readFileSync(keyFile, 'utf8');
  // every entry as stored (LevelDB itself rewrites its files on open: the entries are what counts)
  const entries = async () => {
    const db = new Level<string, Buffer>(storePath, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
    await db.open();
    try {
      return (await db.iterator().all()).map(([k, v]) => `${k}=${v.toString('base64')}`);
    } finally {
      await db.close();
    }
  };
  const before = await entries();

  for (const [what, text, pattern] of [
    ['empty', '', /is damaged: it is empty/],
    ['cut short', good.slice(0, 30), /is damaged: it holds neither a key/],
    ['bad JSON', '{"format": "mailsync-keyring", ', /is damaged: it is not valid JSON/],
    ['no current key', JSON.stringify({ format: 'mailsync-keyring', version: 1, current: 3, keys: [{ id: 2, key: 'ab'.repeat(32) }], idHashKey: 'cd'.repeat(32), messageIdStampKey: 'ef'.repeat(32) }), /current key 3 is not among its keys/],
  ] as const) {
    fs.writeFileSync(keyFile, text);
    const err = t.throws(() => Keyring.load({ keyFile }, { storePath }), `${what}: refused`) as MailsyncError;
    t.match(err.message, new RegExp(`the key file ${keyFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(store\\.keyFile\\)`), 'naming the file');
    t.match(err.message, pattern);
    t.equal(err.code, 'MAILSYNC_ERR_KEY');
  }

  fs.rmSync(keyFile);
  t.throws(() => Keyring.load({ keyFile }, { storePath }), /does not exist, but the store at .* does.*put the file back/, 'missing for an existing store: refused');
  t.notOk(fs.existsSync(keyFile), 'and no new key was made');

  fs.writeFileSync(keyFile, `${crypto.randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  await t.rejects(Store.open({ path: storePath, keyring: Keyring.load({ keyFile }, { storePath }).keyring, encryptContent: true }), /does not belong to the store .*its key 1 is not the key 1 this store was sealed with/, 'another key: refused when the store opens');
  t.same(await entries(), before, 'not an entry of the store changed');

  fs.writeFileSync(keyFile, good, { mode: 0o600 });
  const reopened = await Store.open({ path: storePath, keyring: Keyring.load({ keyFile }, { storePath }).keyring, encryptContent: true });
  t.teardown(() => reopened.close());
  t.same(reopened.openSecret((await reopened.get<{ sealedCredentials: string }>('mbx!u1'))!.sealedCredentials), { imap: { user: 'u', pass: 'p' } }, 'with its own key file back, everything is there');
});

t.test('a store from before key checks is checked on a sealed value', async (t) => {
  const { storePath, keyFile } = setup(t);
  const store = await Store.open({ path: storePath, keyring: Keyring.load({ keyFile }, { storePath }).keyring, encryptContent: true });
  await store.batch().put('mbx!u1', { userId: 'u1', sealedCredentials: store.sealSecret({ imap: { user: 'u', pass: 'p' } }) }).write();
  await store.db.del('meta!keys');
  await store.close();
  await t.rejects(Store.open({ path: storePath, masterKey: crypto.randomBytes(32), encryptContent: true }), /cannot be decrypted with it/);
  const ok = await Store.open({ path: storePath, keyring: Keyring.load({ keyFile }, { storePath }).keyring, encryptContent: true });
  t.teardown(() => ok.close());
  t.ok(await ok.get('meta!keys'), 'its key is recorded once it opened');
});

t.test('with store.encryptContent off, content stays plain and the credentials rotate', async (t) => {
  const { storePath, keyFile } = setup(t);
  const store = await Store.open({ path: storePath, keyring: Keyring.load({ keyFile }, { storePath }).keyring, encryptContent: false });
  t.teardown(() => store.close());
  await store.batch().put('msg!m1', { text: 'plain by choice' }).put('mbx!u1', { userId: 'u1', sealedCredentials: store.sealSecret({ imap: { user: 'u', pass: 'p' } }) }).write();
  const rotation = new KeyRotation(store, silent);
  const result = await rotation.run();
  t.equal(result.state, 'done');
  t.same(await rotation.count(), { sealed: { 2: 1 }, plainContent: 1 });
  t.equal(store.db.getSync('msg!m1')![0], 0, 'the message is still stored unsealed');
  t.match((await rotation.status()).keys, [{ id: 2, current: true, sealed: 1 }]);
});

t.test('keys from store.key cannot be rotated: the error says what to do', async (t) => {
  const { storePath } = setup(t);
  const { keyring } = Keyring.load({ key: 'ab'.repeat(32), keyFile: '/nonexistent/key' });
  const store = await Store.open({ path: storePath, keyring, encryptContent: true });
  t.teardown(() => store.close());
  t.throws(() => new KeyRotation(store, silent).start(), /store\.key \(MAILSYNC_STORE_KEY\).*Put the key into store\.keyFile/);
});
