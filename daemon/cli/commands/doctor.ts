import { MailsyncError } from '../../errors.js';
import pino from 'pino';
import { consentLogin, doctorSettings, runDoctor, type DoctorReport } from '../../ops/doctor.js';
import { MailboxLogins } from '../../sync/oauth2-tokens.js';
import { commandConfig, intOption, stringOption, UsageError, type Command } from '../command.js';
import { ACCESS_HELP, describeAccess, openStoreAccess } from '../store-access.js';

const MARK = { ok: 'ok', warn: 'WARN', fail: 'FAIL', skipped: 'skipped' } as const;

export function renderReport(r: DoctorReport): string {
  const s = r.server;
  const lines = [
    `Mailbox of ${r.userId}: ${s.host}:${s.port} (${s.secure ? 'TLS' : 'STARTTLS or plain'}), login ${s.user} with ${s.auth === 'password' ? 'a password' : 'OAuth2'}`,
    `Sync last recorded: ${r.state}${r.lastError ? ` — ${r.lastError.code}: ${r.lastError.message}` : ''}`,
    '',
  ];
  for (const step of r.steps) {
    lines.push(`  ${MARK[step.outcome].padEnd(8)}${step.step.padEnd(14)}${step.detail}`);
    if (step.advice && step.outcome !== 'ok') lines.push(`  ${''.padEnd(22)}what to do: ${step.advice}`);
  }
  const failed = r.steps.find((x) => x.outcome === 'fail');
  const warned = r.steps.filter((x) => x.outcome === 'warn').length;
  lines.push('', failed
    ? `Result: the mailbox cannot be synced: the ${failed.step} step failed. ${failed.advice ?? ''}`.trimEnd()
    : `Result: every step passed${warned ? ` (${warned} warning${warned > 1 ? 's' : ''})` : ''}; the mailbox can be synced.`);
  return `${lines.join('\n')}\n`;
}

const command: Command = {
  name: 'doctor',
  usage: '--user USER_ID [--timeout SECONDS] [--json]',
  summary: 'check a user\'s mailbox step by step with the stored consent and say what to fix',
  help: `Connects to the user's mail server as sync does, with the credentials stored with their consent, and reports each step in plain words: DNS, TCP, TLS, greeting, auth, capabilities, folders, IDLE; for a failure, what to do. Nothing in the mailbox changes. --timeout bounds each step (default 10 s). Exit status 0 when every step passed (warnings allowed), 1 when one failed. ${ACCESS_HELP}`,
  options: { user: { type: 'string', short: 'u' }, timeout: { type: 'string' }, json: { type: 'boolean' } },
  async run(args) {
    const userId = stringOption(args.values, 'user');
    if (!userId) throw new UsageError('--user USER_ID is required');
    if (!/^[A-Za-z0-9._:-]{1,128}$/.test(userId)) throw new UsageError(`"${userId}" is not a user id (1 to 128 characters from A-Z a-z 0-9 . _ : -)`);
    const timeout = intOption(args.values, 'timeout', 10, 1, 120);
    const config = commandConfig(args);
    const access = await openStoreAccess(config);
    let report: DoctorReport;
    try {
      if (access.via === 'daemon') {
        try {
          report = await access.daemon.json<DoctorReport>('POST', `/v1/admin/mailboxes/${userId}/doctor?timeoutSeconds=${timeout}`);
        } catch (err) {
          if ((err as { status?: number }).status === 404) throw new MailsyncError('MAILSYNC_ERR_CONFIG', `user ${userId} has not granted access to a mailbox`);
          throw err;
        }
      } else {
        const mbx = await access.accounts.getMailbox(userId);
        if (!mbx) throw new MailsyncError('MAILSYNC_ERR_CONFIG', `user ${userId} has not granted access to a mailbox`);
        const o = config.oauth2;
        // no daemon runs: this process may refresh an expired OAuth2 token and save it, as the daemon would
        const logins = new MailboxLogins({
          store: access.store, accounts: access.accounts, log: pino({ level: 'silent' }),
          settings: { refreshMarginMs: o.refreshMarginSeconds * 1000, timeoutMs: o.timeoutMs, providers: { google: o.google, microsoft: o.microsoft, custom: o.custom } },
        });
        const { who, login } = consentLogin(access.store, mbx, logins);
        report = await runDoctor(userId, mbx, who, login, doctorSettings(config, timeout));
      }
    } finally {
      await access.close();
    }
    args.io.stdout.write(args.values.json ? `${JSON.stringify(report, null, 2)}\n` : renderReport(report));
    args.io.stderr.write(`${access.via === 'daemon' ? 'checked by' : 'consent'} ${describeAccess(access, config)}\n`);
    return report.ok ? 0 : 1;
  },
};
export default command;
