import fs from 'node:fs';
import path from 'node:path';
import { IdHasher } from '../../store/crypto.js';
import { MailsyncError } from '../../errors.js';
import { KEY_CHECK_INPUT, readManifest, recordedKeyChecks, restoreInto } from '../../ops/backup.js';
import { commandConfig, type Command } from '../command.js';
import { existingKeyring, storeExists, storeLocked } from '../store-access.js';

const command: Command = {
  name: 'restore',
  usage: 'DIR [--config FILE] [--force]',
  summary: 'replace the store with a backup from DIR (with the daemon stopped)',
  help: 'Checks the whole backup while writing it into a new store, then puts it at store.path; the store that was there is kept beside it as <store.path>.before-restore-<time>, never deleted. Refuses while a daemon holds the store, and when the backup was made under another encryption key than the configured one (its credentials and content could not be read): restore the key that belongs to it, or pass --force to restore anyway.',
  options: { force: { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  async run(args) {
    const dir = args.positionals[0]!;
    const config = commandConfig(args);
    const target = config.store.path;
    const manifest = readManifest(dir);
    const keyring = existingKeyring(config);
    let sameKey = keyring !== null && new IdHasher(keyring.idHashKey).hash(KEY_CHECK_INPUT) === manifest.keyCheck;
    if (!sameKey && !args.values.force) {
      throw new MailsyncError('MAILSYNC_ERR_KEY', keyring
        ? 'the backup was made under another encryption key than the configured one (store.keyFile / store.key): put back the key that belongs to the backup, or pass --force'
        : `the key file ${config.store.keyFile} (store.keyFile) does not exist: put back the key that belongs to the backup, or pass --force`);
    }
    if (storeExists(target) && (await storeLocked(target))) {
      throw new MailsyncError('MAILSYNC_ERR_CONFIG', `the store at ${target} is in use by a running mailsync: stop the daemon first, then restore`);
    }
    const staging = `${target}.restoring-${process.pid}`;
    fs.rmSync(staging, { recursive: true, force: true });
    const { entries } = await restoreInto(dir, staging);
    // the same installation, but its keys may have been rotated since the backup was made
    const missing = keyring ? Object.entries((await recordedKeyChecks(staging)) ?? {}).filter(([id, check]) => !keyring.has(Number(id)) || keyring.keyCheck(Number(id)) !== check).map(([id]) => id) : [];
    if (missing.length && sameKey) {
      sameKey = false;
      if (!args.values.force) {
        fs.rmSync(staging, { recursive: true, force: true });
        throw new MailsyncError('MAILSYNC_ERR_KEY', `the backup holds values sealed under ${missing.map((id) => `key ${id}`).join(', ')}, which ${keyring!.source} no longer holds (retired by \`mailsync keys rotate\` after the backup was made): put back the key file kept from the time of the backup, or pass --force`);
      }
    }
    // the default key file (./data/master.key) lives inside the store directory: it goes with
    // the store that is put in place, or the restored store could not be read
    const keyFile = path.resolve(config.store.keyFile);
    const inside = path.relative(path.resolve(target), keyFile);
    if (!config.store.key && !inside.startsWith('..') && !path.isAbsolute(inside) && fs.existsSync(keyFile)) {
      fs.mkdirSync(path.dirname(path.join(staging, inside)), { recursive: true, mode: 0o700 });
      fs.copyFileSync(keyFile, path.join(staging, inside));
      fs.chmodSync(path.join(staging, inside), 0o600);
    }
    let keptAt: string | null = null;
    if (fs.existsSync(target)) {
      keptAt = `${target}.before-restore-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      fs.renameSync(target, keptAt);
    }
    fs.renameSync(staging, target);
    args.io.stdout.write(`restored ${entries} entries (backup of ${manifest.createdAt}) into ${target}\n`);
    if (keptAt) args.io.stdout.write(`the store that was there is kept at ${keptAt}\n`);
    if (!sameKey) args.io.stderr.write('warning: restored under a different encryption key: mailbox credentials and sealed content cannot be read until the matching key is in place\n');
    return 0;
  },
};
export default command;
