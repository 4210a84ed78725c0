import type { StatusSnapshot } from '../../ops/status.js';
import { statusSnapshot } from '../../ops/status.js';
import { commandConfig, table, type Command } from '../command.js';
import { ACCESS_HELP, describeAccess, openStoreAccess } from '../store-access.js';

function ago(iso: string | null, now: number): string {
  if (!iso) return '-';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : s < 172_800 ? `${Math.round(s / 3600)}h ago` : `${Math.round(s / 86_400)}d ago`;
}

export function usersTable(snap: StatusSnapshot): string {
  const now = Date.parse(snap.generatedAt);
  const rows = snap.mailboxes.map((m) => [
    m.userId,
    m.email ?? '-',
    m.state === 'none' ? 'no consent' : m.state,
    ago(m.lastSyncAt, now),
    m.folders.map((f) => `${f.path}${f.lagSeconds === null ? '' : ` (checked ${f.lagSeconds}s ago)`}`).join(', ') || '-',
    m.lastError ? `${m.lastError.code}: ${m.lastError.message}` : '-',
  ]);
  return table(['USER', 'EMAIL', 'STATE', 'LAST SYNC', 'FOLDERS', 'LAST ERROR'], rows);
}

const command: Command = {
  name: 'users',
  usage: '[--config FILE] [--json]',
  summary: 'table of users\' mailboxes: state, last sync, folders, last error; and the queues',
  help: `Lists every registered user with the state of their mailbox (connecting, initial_sync, live, auth_failed, imap_disabled, unreachable, throttled, revoked, or no consent). --json prints the same snapshot as GET /v1/admin/status. ${ACCESS_HELP}`,
  options: { json: { type: 'boolean' } },
  async run(args) {
    const config = commandConfig(args);
    const access = await openStoreAccess(config);
    try {
      const snap = access.via === 'daemon'
        ? await access.daemon.json<StatusSnapshot>('GET', '/v1/admin/status')
        : await statusSnapshot({ accounts: access.accounts, outbox: access.outbox, push: !!config.webhooks.url });
      if (args.values.json) {
        args.io.stdout.write(`${JSON.stringify(snap, null, 2)}\n`);
        return 0;
      }
      args.io.stdout.write(snap.mailboxes.length ? usersTable(snap) : 'No users are registered.\n');
      const q = snap.queues;
      args.io.stdout.write(`\noutbox: ${q.outbox.queued} event(s) to deliver${q.outbox.push ? '' : ' (no webhook URL: the change feed only)'}; relay: ${q.relay ? `${q.relay.queued} message(s) queued` : 'not running'}\n`);
      args.io.stderr.write(`${describeAccess(access, config)}\n`);
      return 0;
    } finally {
      await access.close();
    }
  },
};
export default command;
