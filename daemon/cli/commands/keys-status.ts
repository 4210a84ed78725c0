import pino from 'pino';
import { KeyRotation, type KeyStatus, type RotationState } from '../../store/key-rotation.js';
import { commandConfig, table, type Command } from '../command.js';
import { ACCESS_HELP, describeAccess, openStoreAccess } from '../store-access.js';

export function keysTable(s: KeyStatus): string {
  const rows = s.keys.map((k) => [String(k.id), k.createdAt ?? '-', k.current ? 'yes' : k.sealed === 0 ? 'no' : 'no (older)', String(k.sealed)]);
  let out = table(['KEY', 'CREATED', 'CURRENT', 'SEALED VALUES'], rows);
  out += `keys from ${s.source}${s.rotatable ? '' : ' (cannot be rotated: they come from store.key)'}\n`;
  if (s.plainContent) out += `${s.plainContent} content value(s) stored unsealed (written while store.encryptContent was off)\n`;
  const older = s.keys.filter((k) => !k.current);
  if (older.length && (!s.rotation || s.rotation.state !== 'running')) out += `older keys are still in the keyring: run \`mailsync keys rotate\` to re-seal under the current key and retire them\n`;
  if (s.rotation) out += `${rotationLine(s.rotation)}\n`;
  return out;
}

export function rotationLine(r: RotationState): string {
  if (r.state === 'running' && r.newKeyId === null) return `rotation starting (${r.startedAt}): counting the sealed values`;
  if (r.state === 'running') return `rotation running since ${r.startedAt}: ${r.resealed} of ${r.toReseal} value(s) re-sealed${r.newKeyId ? ` under key ${r.newKeyId}` : ''}`;
  if (r.state === 'done') return `last rotation ${r.finishedAt}: ${r.resealed} value(s) re-sealed under key ${r.newKeyId}; retired ${r.retiredKeyIds.map((id) => `key ${id}`).join(', ') || 'no key'}`;
  return `last rotation failed at ${r.finishedAt}: ${r.error}`;
}

const command: Command = {
  name: 'keys status',
  usage: '[--config FILE] [--json]',
  summary: 'the encryption keys at rest: ids, which is current, how many sealed values each holds',
  help: `Counts every sealed value (credentials, and message content when store.encryptContent is on) by the key it is sealed under. Never prints key material. ${ACCESS_HELP}`,
  options: { json: { type: 'boolean' } },
  async run(args) {
    const config = commandConfig(args);
    const access = await openStoreAccess(config);
    try {
      const status = access.via === 'daemon'
        ? await access.daemon.json<KeyStatus>('GET', '/v1/admin/keys')
        : await new KeyRotation(access.store, pino({ level: 'silent' })).status();
      args.io.stdout.write(args.values.json ? `${JSON.stringify(status, null, 2)}\n` : keysTable(status));
      args.io.stderr.write(`${describeAccess(access, config)}\n`);
      return 0;
    } finally {
      await access.close();
    }
  },
};
export default command;
