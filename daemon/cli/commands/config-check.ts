import { loadConfig } from '../../config/load.js';
import { stringOption, type Command } from '../command.js';

const command: Command = {
  name: 'config check',
  usage: '[--config FILE]',
  summary: 'validate a config file; print the effective configuration with secrets redacted',
  help: 'Exit status 0 only when the configuration (file, then MAILSYNC_* environment variables, then defaults) is valid. Errors name the option and the problem; warnings (default secrets, misspelt variables) go to stderr and do not fail the check.',
  async run({ values, io }) {
    const file = stringOption(values, 'config');
    const { redacted, warnings } = loadConfig({ file, env: io.env });
    io.stdout.write(`${redacted()}\n`);
    for (const w of warnings) io.stderr.write(`warning: ${w}\n`);
    io.stderr.write(`configuration ${file ?? '(embedded defaults)'} is valid\n`);
    return 0;
  },
};
export default command;
