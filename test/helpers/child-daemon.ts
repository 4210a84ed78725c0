import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import YAML from 'yaml';
import { waitUntil } from './daemon.js';
import { daemonLogFile, logFileSink, noteSecretsIn } from './log-capture.js';

/**
 * The built daemon (`mailsync serve`) as a child process, for what only a real process can
 * show: SIGKILL in the middle of work and a restart on the same store. A child needs its
 * ports up front, so free ones are picked first (port 0 would be "disabled" for SMTP).
 */

const main = fileURLToPath(new URL('../../dist/daemon/cli/main.js', import.meta.url));

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().once('error', reject).listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface ChildDaemon {
  api: string;
  logs: string[];
  process: ChildProcess;
  /** Resolves when the process has exited. */
  exited: Promise<void>;
}

/** Writes `config` to `<dir>/mailsync.yaml` and starts the daemon on it; resolves when /readyz answers 200. */
export async function startChildDaemon(t: Test, dir: string, config: Record<string, unknown>): Promise<ChildDaemon> {
  const file = path.join(dir, 'mailsync.yaml');
  fs.writeFileSync(file, YAML.stringify(config));
  const child = spawn(process.execPath, [main, 'serve', '--config', file], { cwd: dir, env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  noteSecretsIn(config);
  const logs: string[] = [];
  const logFile = logFileSink(daemonLogFile('child'));
  const collect = (chunk: Buffer) => {
    logFile.write(chunk);
    logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<void>((resolve) => child.once('close', () => {
    logFile.close();
    resolve();
  }));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
  });
  const apiCfg = config.api as { port: number };
  const api = `http://127.0.0.1:${apiCfg.port}`;
  await waitUntil(async () => {
    if (child.exitCode !== null) throw new Error(`the daemon exited: ${logs.slice(-5).join('\n')}`);
    return (await fetch(`${api}/readyz`)).ok;
  }, 'the child daemon to be ready', 20_000);
  return { api, logs, process: child, exited };
}
