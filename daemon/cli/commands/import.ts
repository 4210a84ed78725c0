import { MailsyncError } from '../../errors.js';
import { commandConfig, intOption, stringOption, UsageError, type Command } from '../command.js';
import { apiBaseUrl } from '../store-access.js';

interface ImportView {
  id: string;
  state: 'queued' | 'running' | 'done' | 'failed';
  scanned: number;
  total: number;
  matched: number;
  threadsLinked: number;
  imported: number;
  error: string | null;
}

const ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** `[#####.....]  40%  scanned 800/2000  matched 3`; a terminal gets it redrawn in place. */
export function progressLine(v: ImportView, width = 30): string {
  const ratio = v.total > 0 ? Math.min(1, v.scanned / v.total) : v.state === 'done' ? 1 : 0;
  const filled = Math.round(ratio * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.round(ratio * 100)).padStart(3)}%  ${v.state.padEnd(7)} scanned ${v.scanned}/${v.total}  matched ${v.matched}`;
}

async function call<T>(base: string, token: string, user: string, method: string, path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'x-acting-user': user, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new MailsyncError('MAILSYNC_ERR_UNREACHABLE', `the daemon's API at ${base} does not answer (${(err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message}): imports run inside the running daemon; start it, or check api.host and api.port`);
  }
  const text = await res.text();
  if (!res.ok) {
    let message = text.slice(0, 300);
    try {
      message = (JSON.parse(text) as { error: { message: string } }).error.message;
    } catch {
      // not the API's error shape: show the start of the body
    }
    throw new MailsyncError('MAILSYNC_ERR_UNREACHABLE', `the daemon answered ${res.status}: ${message}`);
  }
  return JSON.parse(text) as T;
}

const command: Command = {
  name: 'import',
  usage: '--user USER --candidate CANDIDATE [--since DATE] [--interval MS]',
  summary: "import older conversations with a candidate from a user's mailbox, with a progress bar",
  help: 'Asks the running daemon (api.host:api.port, first of api.tokens: run it with the daemon\'s configuration) to search the user\'s mailbox for mail from, to or cc the candidate\'s addresses, whole threads included, and link them to the candidate; acts as that user (only the mailbox owner may import). Without --since there is no time limit. Running it again imports nothing twice. Exit status 0 when the import is done, 1 when it failed.',
  options: { user: { type: 'string' }, candidate: { type: 'string' }, since: { type: 'string' }, interval: { type: 'string' } },
  async run(args) {
    const { values, io } = args;
    const user = stringOption(values, 'user');
    const candidate = stringOption(values, 'candidate');
    if (!user || !ID.test(user)) throw new UsageError('--user must name the ATS user whose mailbox is searched (1 to 128 characters from A-Z a-z 0-9 . _ : -)');
    if (!candidate || !ID.test(candidate)) throw new UsageError('--candidate must name the candidate (1 to 128 characters from A-Z a-z 0-9 . _ : -)');
    const since = stringOption(values, 'since');
    if (since !== undefined && !Number.isFinite(Date.parse(since))) throw new UsageError(`--since must be a date such as 2024-01-31 or 2024-01-31T08:00:00Z, not "${since}"`);
    const interval = intOption(values, 'interval', 250, 10, 60_000);
    const config = commandConfig(args);
    const base = apiBaseUrl(config);
    const token = config.api.tokens[0]!;
    const body = { userId: user, ...(since ? { since: new Date(since).toISOString() } : {}) };
    let view = await call<ImportView>(base, token, user, 'POST', `/v1/candidates/${encodeURIComponent(candidate)}/imports`, body);
    const tty = io.stderr.isTTY === true;
    let last = '';
    const draw = () => {
      const line = progressLine(view);
      if (line === last) return;
      last = line;
      // a terminal redraws one line; a pipe or log file gets a line per change
      io.stderr.write(tty ? `\r${line}` : `${line}\n`);
    };
    draw();
    while (view.state === 'queued' || view.state === 'running') {
      await new Promise((r) => setTimeout(r, interval));
      view = await call<ImportView>(base, token, user, 'GET', `/v1/imports/${encodeURIComponent(view.id)}`);
      draw();
    }
    if (tty) io.stderr.write('\n');
    if (view.state === 'failed') {
      io.stderr.write(`import ${view.id} failed: ${view.error ?? 'no reason given'}\n`);
      return 1;
    }
    io.stdout.write(`import ${view.id} done: ${view.matched} messages with the candidate, ${view.imported} stored, ${view.threadsLinked} threads linked to ${candidate}\n`);
    return 0;
  },
};
export default command;
