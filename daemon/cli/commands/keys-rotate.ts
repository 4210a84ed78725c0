import pino from 'pino';
import { MailsyncError } from '../../errors.js';
import { KeyRotation, type KeyStatus, type RotationState } from '../../store/key-rotation.js';
import { commandConfig, intOption, type Command } from '../command.js';
import { describeAccess, openStoreAccess } from '../store-access.js';
import { keysTable, rotationLine } from './keys-status.js';

const POLL_MS = 250;

const command: Command = {
  name: 'keys rotate',
  usage: '[--config FILE] [--batch-size N] [--pause-ms MS]',
  summary: 'make a new encryption key current, re-seal every sealed value under it, retire the older keys',
  help: 'The new key is written to store.keyFile (mode 0600) first; then every sealed value (credentials, and message content when store.encryptContent is on) is re-sealed under it in batches of --batch-size values (default 500), with --pause-ms between batches (default 0) to spare a busy store. Reads and writes go on meanwhile: the older keys still open what they sealed until a count finds nothing left under them, and only then are they removed from the key file. While the daemon runs, the daemon rotates (POST /v1/admin/keys/rotate, with the first of api.tokens) and this command follows it until it ends; with the daemon stopped the command rotates the store itself. Stopped half-way, every key stays and everything stays readable: run it again. Keys that come from store.key (MAILSYNC_STORE_KEY) cannot be rotated. Backups made before a rotation need the key file from before it: keep a copy with them. Never prints key material.',
  options: { 'batch-size': { type: 'string' }, 'pause-ms': { type: 'string' } },
  async run(args) {
    const batchSize = intOption(args.values, 'batch-size', 500, 1, 10_000);
    const pauseMs = intOption(args.values, 'pause-ms', 0, 0, 60_000);
    const config = commandConfig(args);
    const access = await openStoreAccess(config);
    const { stdout, stderr } = args.io;
    let shown = '';
    const show = (r: RotationState) => {
      const line = rotationLine(r);
      if (line !== shown) stderr.write(`${line}\n`);
      shown = line;
    };
    try {
      let result: RotationState;
      let status: KeyStatus;
      if (access.via === 'daemon') {
        const started = await access.daemon.json<RotationState>('POST', '/v1/admin/keys/rotate', { batchSize, pauseMs });
        show(started);
        for (;;) {
          await new Promise((r) => setTimeout(r, POLL_MS));
          status = await access.daemon.json<KeyStatus>('GET', '/v1/admin/keys');
          const r = status.rotation;
          if (!r || r.startedAt !== started.startedAt) throw new MailsyncError('MAILSYNC_ERR_UNREACHABLE', 'the daemon no longer reports this rotation (was it restarted?); `mailsync keys status` shows where the keys stand: run the rotation again if older keys remain');
          show(r);
          if (r.state !== 'running') {
            result = r;
            break;
          }
        }
      } else {
        const rotation = new KeyRotation(access.store, pino({ level: 'silent' }));
        result = await rotation.run({ batchSize, pauseMs, onProgress: show });
        status = await rotation.status();
      }
      stderr.write(`${describeAccess(access, config).replace(/^read from/, 'rotated in')}\n`);
      if (result.state !== 'done') {
        stderr.write(`the rotation did not finish: ${result.error}\nevery key is kept and everything stays readable; run \`mailsync keys rotate\` again\n`);
        stdout.write(keysTable(status));
        return 1;
      }
      stdout.write(`key ${result.newKeyId} is current; ${result.resealed} sealed value(s) re-sealed under it; ${result.retiredKeyIds.length ? `${result.retiredKeyIds.map((id) => `key ${id}`).join(', ')} retired from ${status.source}` : 'no older key to retire'}\n`);
      stdout.write(keysTable(status));
      return 0;
    } finally {
      await access.close();
    }
  },
};
export default command;
