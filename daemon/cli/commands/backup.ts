import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { backupLines, writeBackup } from '../../ops/backup.js';
import { commandConfig, type Command } from '../command.js';
import { describeAccess, openStoreAccess } from '../store-access.js';

const command: Command = {
  name: 'backup',
  usage: 'DIR [--config FILE]',
  summary: 'write a consistent backup of the store into a new or empty directory (the daemon may run)',
  help: 'The backup is one point in time (a LevelDB snapshot), also while the daemon runs and writes: then the daemon streams it through its API (GET /v1/admin/backup, with the first of api.tokens); with the daemon stopped the command reads the store itself. DIR gets mailsync-backup.ndjson.gz and manifest.json. Secrets in it stay sealed: the backup is of no use without the encryption key (store.keyFile or store.key), which is NOT in it: keep a copy of the key apart from the backups. Restore with `mailsync restore DIR`.',
  positionals: { min: 1, max: 1 },
  async run(args) {
    const dir = args.positionals[0]!;
    const config = commandConfig(args);
    const access = await openStoreAccess(config);
    try {
      const lines = access.via === 'daemon'
        ? Readable.fromWeb((await access.daemon.request('GET', '/v1/admin/backup')).body as WebReadableStream<Uint8Array>)
        : backupLines(access.store);
      const manifest = await writeBackup(dir, lines);
      args.io.stdout.write(`backup of ${manifest.entries} entries written to ${dir} (as of ${manifest.createdAt})\n`);
      args.io.stderr.write(`${describeAccess(access, config)}; keep the key (store.keyFile) apart from the backup: the backup cannot be read without it\n`);
      return 0;
    } finally {
      await access.close();
    }
  },
};
export default command;
