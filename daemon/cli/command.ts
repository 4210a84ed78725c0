import type { ParseArgsConfig } from 'node:util';
import { loadConfig, type Config } from '../config/load.js';

/**
 * What one `mailsync` command is: its words, its help, its options and what it runs. Each
 * command lives in its own module under `commands/` and is listed once in `main.ts`.
 */

export type OptionSpecs = NonNullable<ParseArgsConfig['options']>;
export type OptionValues = Record<string, string | boolean | Array<string | boolean> | undefined>;

/** Where a command writes and what it may read from its surroundings (tests pass their own). */
export interface CommandIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  env: NodeJS.ProcessEnv;
}

export interface CommandArgs {
  /** Parsed options, the global ones (`config`, `pretty`) included. */
  values: OptionValues;
  /** Positional arguments after the command's words. */
  positionals: string[];
  io: CommandIo;
}

export interface Command {
  /** The words that name it: `serve`, `config check`, `events list`. */
  name: string;
  /** What follows the name on the usage line, e.g. `[--failed] [--limit N]`. */
  usage: string;
  /** One line for `mailsync --help`. */
  summary: string;
  /** Longer text for `mailsync <command> --help`: what it does, and what it needs running. */
  help?: string;
  /** Options of its own, besides the global ones. */
  options?: OptionSpecs;
  /** How many positional arguments it takes after its name. */
  positionals?: { min: number; max: number };
  run(args: CommandArgs): Promise<number>;
}

/** Options every command accepts. */
export const GLOBAL_OPTIONS: OptionSpecs = {
  config: { type: 'string', short: 'c' },
  pretty: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

/** A mistake in how the command was called: printed with the usage line, exit status 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export function stringOption(values: OptionValues, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

export function intOption(values: OptionValues, name: string, fallback: number, min = 1, max = 100_000): number {
  const v = stringOption(values, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, not "${v}"`);
  return n;
}

/** Loads the configuration named by `--config` (or the defaults) and prints its warnings. */
export function commandConfig(args: CommandArgs): Config {
  const { config, warnings } = loadConfig({ file: stringOption(args.values, 'config'), env: args.io.env });
  for (const w of warnings) args.io.stderr.write(`warning: ${w}\n`);
  return config;
}

/** Text of one line per row, columns padded to their widest cell. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}
