import crypto from 'node:crypto';
import t, { type Test } from 'tap';
import { Store } from '../../daemon/store/store.js';
import { tempDir } from '../helpers/stack.js';
import { findInStoreFiles, foundAnywhere } from '../helpers/store-files.js';

/**
 * LevelDB keeps deleted values in its files until a compaction merges them with their
 * deletions. The hard case: a value written and deleted while both were still in the memtable
 * (a consent revoked minutes after it was granted, a candidate erased right after their mail
 * came in) goes out in one table file, which a plain compaction of the range leaves alone when
 * no deeper file overlaps it. These tests write exactly that and scan every file afterwards.
 */

async function open(t: Test) {
  const dir = tempDir(t);
  const store = await Store.open({ path: dir, masterKey: crypto.randomBytes(32), encryptContent: false });
  t.teardown(() => store.close());
  return { dir, store };
}

const secret = () => `secret-${crypto.randomBytes(16).toString('hex')}`;

t.test('compactPrefixes: a value written and deleted in one memtable leaves the files', async (t) => {
  const { dir, store } = await open(t);
  const s = secret();
  await store.batch().put('mbx!u1', { sealedCredentials: s }).put('fld!u1!INBOX', { s }).put('fld!u2!INBOX', { keep: true }).put('fld!u1!\xff', { keep: 'a folder named ÿ' }).write();
  t.ok(foundAnywhere(findInStoreFiles(dir, { s })).length, 'before: the value is in the write-ahead log');
  await store.batch().del('mbx!u1').del('fld!u1!INBOX').write();
  await store.compactPrefixes(['mbx!u1', 'fld!u1!INBOX']);
  t.same(foundAnywhere(findInStoreFiles(dir, { s })), [], 'after: in no file');
  t.same(await store.get('fld!u2!INBOX'), { keep: true }, 'other keys stay');
  t.same(await store.get('fld!u1!\xff'), { keep: 'a folder named ÿ' }, 'a key at the end of a compacted prefix stays');
});

t.test('compactPrefixes: a prefix that is itself a live key is not deleted', async (t) => {
  const { store } = await open(t);
  await store.batch().put('mbx!u1', { live: true }).put('mbx!u1x', { gone: secret() }).write();
  await store.batch().del('mbx!u1x').write();
  await store.compactPrefixes(['mbx!u1']);
  t.same(await store.get('mbx!u1'), { live: true });
});

t.test('compact and purgeDeleted: the same on the whole store, keys too', async (t) => {
  for (const how of ['compact', 'purgeDeleted'] as const) {
    await t.test(how, async (t) => {
      const { dir, store } = await open(t);
      const s = secret();
      const inKey = `addr!${crypto.randomBytes(16).toString('hex')}@example.org!c1`;
      await store.batch().put('msg!m_1', { text: s }).put(inKey, '').put('evt!0001', { data: s }).put('user!u1', { keep: true }).write();
      await store.batch().del('msg!m_1').del(inKey).put('evt!0001', { data: { erased: true } }).write();
      await store[how]();
      const found = foundAnywhere(findInStoreFiles(dir, { value: s, key: inKey }));
      if (how === 'compact') t.same(found.filter((f) => !/MANIFEST/.test(f)), [], 'no table or log file holds the value or the key (the MANIFEST may, until reopened)');
      else t.same(found, [], 'no file at all holds the value or the key');
      t.same(await store.get('evt!0001'), { data: { erased: true } }, 'the overwritten value reads as written');
      t.same(await store.get('user!u1'), { keep: true }, 'the rest stays');
    });
  }
});
