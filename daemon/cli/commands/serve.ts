import { loadConfig } from '../../config/load.js';
import { createLogger } from '../../ops/logger.js';
import { createDaemon } from '../../daemon.js';
import { stringOption, type Command } from '../command.js';

/** A stop that takes longer than this is cut short, so a hung IMAP server cannot block a restart. */
const FORCE_EXIT_MS = 30_000;

const command: Command = {
  name: 'serve',
  usage: '[--config FILE] [--pretty]',
  summary: 'start the daemon (embedded defaults without --config)',
  help: 'Logs are JSON lines on stdout; --pretty (or a terminal on stdout, or log.pretty) prints them for people. SIGTERM or SIGINT stops it: the API stops accepting, mailbox connections log out, the store closes; a second signal exits at once.',
  async run({ values, io }) {
    const { config, warnings } = loadConfig({ file: stringOption(values, 'config'), env: io.env });
    const pretty = values.pretty === true || io.stdout.isTTY === true || config.log.pretty;
    const log = createLogger({ level: config.log.level, pretty });
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
        log.error(`stopping took longer than ${FORCE_EXIT_MS / 1000} s: exiting`);
        process.exit(1);
      }, FORCE_EXIT_MS);
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
      // a key that is missing or wrong does not fix itself: 78 (EX_CONFIG) tells a supervisor
      // not to restart in a loop (systemd: RestartPreventExitStatus=78)
      return (err as { code?: string }).code === 'MAILSYNC_ERR_KEY' ? 78 : 1;
    }
    return new Promise<number>(() => {}); // runs until a signal
  },
};
export default command;
