import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import t from 'tap';
import { backupLines, restoreInto, writeBackup, BACKUP_FILE } from '../../daemon/ops/backup.js';
import { openStack, tempDir } from '../helpers/stack.js';

/** The backup stream itself: one point in time, and never a damaged or cut-off backup restored. */

t.test('a backup shows the store as it was when it started, whatever is written meanwhile', async (t) => {
  const { store } = await openStack(t);
  await store.batch().put('user!a', { id: 'a' }).put('user!b', { id: 'b' }).write();
  const lines = backupLines(store);
  const header = await lines.next();
  t.match(JSON.parse(header.value as string), { format: 'mailsync-backup', version: 1 }, 'starts with its header');
  // writes after the backup began: a new key, a changed one, a deleted one
  await store.batch().put('user!c', { id: 'c' }).put('user!a', { id: 'a', changed: true }).del('user!b').write();
  const rest: string[] = [];
  for await (const l of lines) rest.push(l);
  const entries = rest.slice(0, -1).map((l) => JSON.parse(l) as [string, string]);
  const keys = entries.map(([k]) => k);
  t.ok(keys.includes('user!b'), 'a key deleted meanwhile is still in the backup');
  t.notOk(keys.includes('user!c'), 'a key added meanwhile is not');
  const a = entries.find(([k]) => k === 'user!a')!;
  t.same(store.decode(Buffer.from(a[1], 'base64')), { id: 'a' }, 'a key changed meanwhile has its old value');
  t.match(JSON.parse(rest[rest.length - 1]!), { end: true, entries: entries.length }, 'ends with the count');
});

t.test('restore checks every line: a cut-off or altered backup is refused and leaves nothing', async (t) => {
  const { store } = await openStack(t);
  const batch = store.batch();
  for (let i = 0; i < 2_500; i++) batch.put(`user!u${String(i).padStart(5, '0')}`, { id: i });
  await batch.write();
  const dir = path.join(tempDir(t), 'b');
  const manifest = await writeBackup(dir, backupLines(store));
  t.equal(manifest.entries, 2_503, 'every entry (and the store\'s own meta entries: version, instance, key checks) is in it');

  const good = path.join(tempDir(t), 'restored');
  const res = await restoreInto(dir, good);
  t.equal(res.entries, manifest.entries, 'a whole backup restores');

  const text = zlib.gunzipSync(fs.readFileSync(path.join(dir, BACKUP_FILE))).toString('utf8').split('\n');
  const cases: Array<[string, string[], RegExp]> = [
    ['cut off before its end line', text.slice(0, 1_500), /incomplete: it stops after \d+ entries/],
    ['one value altered', text.map((l, i) => (i === 7 ? l.replace(/"[^"]*"\]$/, '"AAAA"]') : l)), /damaged: its end line does not match/],
    ['a line cut in half', [...text.slice(0, 9), text[9]!.slice(0, 10), ...text.slice(10)], /damaged: line 10 is not valid JSON/],
  ];
  for (const [what, lines, message] of cases) {
    fs.writeFileSync(path.join(dir, BACKUP_FILE), zlib.gzipSync(lines.join('\n')));
    const target = path.join(tempDir(t), 'target');
    await t.rejects(restoreInto(dir, target), message, `${what}: refused`);
    t.notOk(fs.existsSync(target), `${what}: no partial store is left`);
  }
});
