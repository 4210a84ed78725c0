#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { createLogger } from '../ops/logger.js';
import { createDaemon } from '../daemon.js';
import { MailsyncError } from '../errors.js';

const HELP = `mailsync — sync applicant-tracking email threads from recruiters' mailboxes

Usage:
  mailsync serve [--config FILE] [--pretty]   start the daemon (embedded defaults without --config)
  mailsync config check [--config FILE]       validate a config file and print the effective
                                              configuration with secrets redacted (exit 0 when valid)
  mailsync --help | --version

Every option can also be set by an environment variable: MAILSYNC_ and the key path in
upper case with _ between parts (api.port → MAILSYNC_API_PORT). See config/example.yaml.
`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      pretty: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
  });
  if (values.version) {
    const { createRequire } = await import('node:module');
    const pkg = createRequire(import.meta.url)('../../../package.json') as { version: string };
    process.stdout.write(`${pkg.version}\n`);
    return 0;
  }
  const [command, sub] = positionals;
  if (values.help || !command) {
    process.stdout.write(HELP);
    return command || values.help ? 0 : 2;
  }
  if (command === 'config' && sub === 'check') {
    const { redacted, warnings } = loadConfig({ file: values.config });
    process.stdout.write(`${redacted()}\n`);
    for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
    process.stderr.write(`configuration ${values.config ? values.config : '(embedded defaults)'} is valid\n`);
    return 0;
  }
  if (command === 'config') {
    process.stderr.write(`"mailsync config" needs a subcommand: mailsync config check [--config FILE]\n`);
    return 2;
  }
  if (command === 'serve') return serve(values.config, values.pretty ?? process.stdout.isTTY === true);
  process.stderr.write(`unknown command "${positionals.join(' ')}"\n\n${HELP}`);
  return 2;
}

async function serve(file: string | undefined, pretty: boolean): Promise<number> {
  const { config, warnings } = loadConfig({ file });
  const log = createLogger({ level: config.log.level, pretty: pretty || config.log.pretty });
  for (const w of warnings) log.warn(w);
  const daemon = createDaemon(config, log);
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      log.warn({ signal: sig }, 'second signal: exiting at once');
      process.exit(1);
    }
    log.info({ signal: sig }, 'stopping: finishing work in flight');
    const force = setTimeout(() => {
      log.error('stopping took longer than 30 s: exiting');
      process.exit(1);
    }, 30_000);
    force.unref();
    daemon.stop().then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    await daemon.start();
  } catch (err) {
    log.fatal({ err: { message: (err as Error).message, code: (err as { code?: string }).code } }, 'mailsync could not start');
    await daemon.stop().catch(() => undefined);
    return 1;
  }
  return new Promise<number>(() => {}); // runs until a signal
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (err) => {
    const msg = err instanceof MailsyncError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? (err as Error).message : (err as Error).stack;
    process.stderr.write(`mailsync: ${msg}\n`);
    process.exitCode = err instanceof MailsyncError ? 1 : 2;
  },
);
