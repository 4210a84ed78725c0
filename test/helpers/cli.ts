import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import type { Test } from 'tap';
import { TOKEN, waitUntil } from './daemon.js';
import { tempDir } from './stack.js';
import { daemonLogFile, logFileSink, noteSecret, noteSecretsIn } from './log-capture.js';

/** The built CLI run as a process, and a daemon started by `mailsync serve` in its own process. */

export const root = fileURLToPath(new URL('../../', import.meta.url));
export const cliPath = path.join(root, 'dist/daemon/cli/main.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `mailsync ARGS` without blocking this process (receivers in the test keep answering). */
export function runCli(args: string[], opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  noteCliSecrets(args, opts.env ?? {}, opts.cwd ?? root);
  const file = logFileSink(daemonLogFile(`cli-${args[0] ?? 'none'}`));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], { cwd: opts.cwd ?? root, env: { PATH: process.env.PATH ?? '', ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      file.write(c);
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      file.write(c);
      stderr += c.toString();
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`mailsync ${args.join(' ')} did not finish in ${opts.timeoutMs ?? 60_000} ms\n${stdout}\n${stderr}`));
    }, opts.timeoutMs ?? 60_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      // 'exit' can come before the pipes are drained
      setImmediate(() => resolve({ code, stdout, stderr }));
    });
    child.on('close', () => file.close());
  });
}

/**
 * Notes the secrets a command is given: those in its --config file and in MAILSYNC_*
 * variables whose names say they hold one.
 */
function noteCliSecrets(args: string[], env: Record<string, string>, cwd: string): void {
  const at = args.indexOf('--config');
  const file = at >= 0 ? args[at + 1] : undefined;
  if (file) {
    try {
      noteSecretsIn(YAML.parse(fs.readFileSync(path.resolve(cwd, file), 'utf8')));
    } catch {
      // a missing or broken file is what some tests are about
    }
  }
  for (const [k, v] of Object.entries(env)) {
    if (/^MAILSYNC_(.*(TOKENS?|PASS|SECRET)|STORE_KEY)$/.test(k)) for (const part of v.split(',')) noteSecret(`secret in ${k}`, part.trim());
  }
}

/** A port free right now (the daemon needs a fixed one so commands can find its API). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().once('error', reject).listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface ServeSetup {
  dir: string;
  configFile: string;
  port: number;
  apiUrl: string;
  storePath: string;
  keyFile: string;
}

/** A config file in a fresh directory: its own store and key, a fixed free API port, the test token. */
export async function writeServeConfig(t: Test, extra: Record<string, unknown> = {}): Promise<ServeSetup> {
  const dir = tempDir(t);
  const port = await freePort();
  const storePath = path.join(dir, 'store');
  const keyFile = path.join(dir, 'master.key');
  const base = {
    api: { host: '127.0.0.1', port, tokens: [TOKEN] },
    store: { path: storePath, keyFile },
    sync: { allowPlaintext: true, sentPollSeconds: 1, backoff: { minMs: 100, maxMs: 2_000, resetAfterSeconds: 5 } },
    smtp: { submission: { port: 0 }, intake: { port: 0 } },
  };
  const merged = merge(base, extra);
  const configFile = path.join(dir, 'mailsync.yaml');
  fs.writeFileSync(configFile, YAML.stringify(merged));
  return { dir, configFile, port, apiUrl: `http://127.0.0.1:${port}`, storePath, keyFile };
}

function merge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const av = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && av && typeof av === 'object' && !Array.isArray(av) ? merge(av as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

export interface ServeProcess {
  child: ChildProcess;
  output: () => string;
  /** SIGTERM and wait for the exit status. */
  stop: () => Promise<number | null>;
}

/** `mailsync serve --config FILE` as a child process, ready when /readyz says so. */
export async function startServe(t: Test, setup: ServeSetup, env: Record<string, string> = {}): Promise<ServeProcess> {
  noteCliSecrets(['serve', '--config', setup.configFile], env, setup.dir);
  const child = spawn(process.execPath, [cliPath, 'serve', '--config', setup.configFile], { cwd: setup.dir, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const file = logFileSink(daemonLogFile('serve'));
  child.on('close', () => file.close());
  let out = '';
  const collect = (c: Buffer) => {
    file.write(c);
    out += c.toString();
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    return exited;
  };
  t.teardown(async () => {
    await stop();
    if (!t.passing()) console.error(`--- mailsync serve output (last 4000 characters) ---\n${out.slice(-4000)}`);
  });
  await waitUntil(async () => {
    if (child.exitCode !== null) throw new Error(`serve exited with ${child.exitCode}: ${out.slice(-2000)}`);
    const r = await fetch(`${setup.apiUrl}/readyz`).catch(() => null);
    return r?.ok ?? false;
  }, `mailsync serve to be ready on ${setup.apiUrl}`, 30_000);
  return { child, output: () => out, stop };
}
