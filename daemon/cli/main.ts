#!/usr/bin/env node
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { MailsyncError } from '../errors.js';
import { GLOBAL_OPTIONS, UsageError, type Command, type CommandIo } from './command.js';

/**
 * The commands of `mailsync`, in the order `--help` lists them. Adding a command is one line
 * here and a module under `commands/` whose default export is a `Command`.
 */
const COMMANDS: Array<() => Promise<{ default: Command }>> = [
  () => import('./commands/serve.js'),
  () => import('./commands/config-check.js'),
  () => import('./commands/doctor.js'),
  () => import('./commands/users.js'),
  () => import('./commands/events-list.js'),
  () => import('./commands/events-redeliver.js'),
  () => import('./commands/backup.js'),
  () => import('./commands/restore.js'),
  () => import('./commands/import.js'),
  () => import('./commands/keys-status.js'),
  () => import('./commands/keys-rotate.js'),
];

const INTRO = `mailsync — sync applicant-tracking email threads from recruiters' mailboxes`;
const STORE_NOTE = `Commands that read the store (users, events, backup, keys) open it themselves when no daemon runs;
while the daemon runs (it holds the store) they ask its API at api.host:api.port with the first
of api.tokens, so give them the daemon's configuration. restore needs the daemon stopped.
`;
const OUTRO = `Global options: --config FILE (-c), --pretty, --help (-h). \`mailsync <command> --help\` says more.
Every option can also be set by an environment variable: MAILSYNC_ and the key path in
upper case with _ between parts (api.port → MAILSYNC_API_PORT). See config/example.yaml.
`;

async function loadCommands(): Promise<Command[]> {
  return Promise.all(COMMANDS.map(async (load) => (await load()).default));
}

function overview(commands: Command[]): string {
  const lines = commands.map((c) => `  mailsync ${c.name} ${c.usage}`.trimEnd() + `\n      ${c.summary}`);
  return `${INTRO}\n\nUsage:\n${lines.join('\n')}\n  mailsync --help | --version\n\n${STORE_NOTE}\n${OUTRO}`;
}

function commandHelp(c: Command): string {
  return `Usage: mailsync ${c.name} ${c.usage}\n\n${c.summary}.\n${c.help ? `\n${wrap(c.help, 92)}\n` : ''}\n${OUTRO}`;
}

function wrap(text: string, width: number): string {
  return text.split('\n').map((para) => {
    const out: string[] = [];
    let line = '';
    for (const w of para.split(' ')) {
      if (line && line.length + 1 + w.length > width) {
        out.push(line);
        line = w;
      } else line = line ? `${line} ${w}` : w;
    }
    return [...out, line].join('\n');
  }).join('\n');
}

/** The command named by the longest run of leading words (`events list` before `events`). */
function findCommand(commands: Command[], words: string[]): { command: Command; rest: string[] } | null {
  let best: { command: Command; rest: string[] } | null = null;
  for (const c of commands) {
    const parts = c.name.split(' ');
    if (parts.every((p, i) => words[i] === p) && (!best || parts.length > best.command.name.split(' ').length)) {
      best = { command: c, rest: words.slice(parts.length) };
    }
  }
  return best;
}

async function main(argv: string[], io: CommandIo): Promise<number> {
  const commands = await loadCommands();
  // the words before the first option name the command; its own options are known only then
  const words: string[] = [];
  for (const a of argv) {
    if (a.startsWith('-')) break;
    words.push(a);
  }
  if (words.length === 0) {
    const { values } = parseArgs({ args: argv, allowPositionals: true, strict: false, options: { ...GLOBAL_OPTIONS, version: { type: 'boolean', short: 'v' } } });
    if (values.version) {
      const pkg = createRequire(import.meta.url)('../../../package.json') as { version: string };
      io.stdout.write(`${pkg.version}\n`);
      return 0;
    }
    if (values.help) {
      io.stdout.write(overview(commands));
      return 0;
    }
    io.stderr.write(overview(commands));
    return 2;
  }
  const found = findCommand(commands, words);
  if (!found) {
    const group = commands.filter((c) => c.name.startsWith(`${words[0]} `));
    if (group.length && words.length === 1) {
      io.stderr.write(`"mailsync ${words[0]}" needs a subcommand: ${group.map((c) => `mailsync ${c.name}`).join(', ')}\n`);
    } else {
      io.stderr.write(`unknown command "${words.join(' ')}"\n\n${overview(commands)}`);
    }
    return 2;
  }
  const { command } = found;
  const parsed = parseArgs({ args: argv.slice(command.name.split(' ').length), allowPositionals: true, options: { ...GLOBAL_OPTIONS, ...command.options } });
  if (parsed.values.help) {
    io.stdout.write(commandHelp(command));
    return 0;
  }
  const { min, max } = command.positionals ?? { min: 0, max: 0 };
  if (parsed.positionals.length < min || parsed.positionals.length > max) {
    io.stderr.write(`${parsed.positionals.length < min ? 'missing argument' : `unexpected argument "${parsed.positionals[max]}"`}\nUsage: mailsync ${command.name} ${command.usage}\n`);
    return 2;
  }
  try {
    return await command.run({ values: parsed.values, positionals: parsed.positionals, io });
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`${err.message}\nUsage: mailsync ${command.name} ${command.usage}\n`);
      return 2;
    }
    throw err;
  }
}

main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env }).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (err) => {
    const known = err instanceof MailsyncError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    process.stderr.write(`mailsync: ${known ? (err as Error).message : (err as Error).stack}\n`);
    process.exitCode = err instanceof MailsyncError ? 1 : 2;
  },
);
