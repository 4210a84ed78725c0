import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import YAML from 'yaml';
import { TOKEN } from './daemon.js';
import { daemonLogFile, logFileSink, noteSecretsIn } from './log-capture.js';

/**
 * The built daemon as a real process (`node dist/daemon/cli/main.js serve`), for tests about
 * what only a process shows: kill -9, signals, exit codes. Its JSON log lines are kept in
 * `logs` and appended to `logFile`.
 */

const cli = fileURLToPath(new URL('../../dist/daemon/cli/main.js', import.meta.url));

export interface DaemonProcess {
  child: ChildProcess;
  apiUrl: string;
  logs: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  api: <T = Record<string, unknown>>(method: string, url: string, body?: unknown, actingUser?: string) => Promise<{ status: number; body: T }>;
}

/**
 * Writes a JSON config file for a process on a fresh store in `dir` (API on a free port,
 * SMTP listeners off, plain loopback IMAP allowed) with these webhook and sync options.
 */
export function writeConfig(dir: string, opts: { webhooks: Record<string, unknown>; sync: Record<string, unknown> }): string {
  const file = path.join(dir, 'mailsync.json');
  fs.writeFileSync(file, JSON.stringify({
    api: { port: 0, tokens: [TOKEN] },
    store: { path: path.join(dir, 'store'), keyFile: path.join(dir, 'master.key') },
    ats: { messageIdDomains: ['ats.example.net'] },
    webhooks: opts.webhooks,
    sync: { allowPlaintext: true, ...opts.sync },
    smtp: { submission: { port: 0 }, intake: { port: 0 } },
  }, null, 2));
  return file;
}

/** Starts the daemon and resolves once its API listens (the "mailsync started" log line). */
export async function spawnDaemon(t: Test, configFile: string, logFile: string): Promise<DaemonProcess> {
  // MAILSYNC_* variables of the test run must not leak into the daemon's configuration
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MAILSYNC_')));
  noteSecretsIn(YAML.parse(fs.readFileSync(configFile, 'utf8')));
  const child = spawn(process.execPath, [cli, 'serve', '--config', configFile], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  const fileOut = fs.createWriteStream(logFile, { flags: 'a' });
  const scanned = logFileSink(daemonLogFile('process'));
  const out = {
    write(chunk: Buffer) {
      fileOut.write(chunk);
      scanned.write(chunk);
    },
  };
  // 'close', not 'exit': output can still arrive after the exit until the pipes are drained
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => {
      fileOut.end();
      scanned.close();
      resolve({ code, signal });
    });
  });
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  let partial = '';
  const started = new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      out.write(chunk);
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines.filter(Boolean)) {
        logs.push(line);
        if (line.includes('"mailsync started"')) resolve((JSON.parse(line) as { api: string }).api);
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => out.write(chunk));
    void exited.then(({ code, signal }) => reject(new Error(`the daemon exited before it started (code ${code}, signal ${signal}); see ${logFile}`)));
  });
  const apiUrl = await started;
  const api: DaemonProcess['api'] = async (method, url, body, actingUser) => {
    noteSecretsIn(body);
    const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (actingUser) headers['x-acting-user'] = actingUser;
    const res = await fetch(`${apiUrl}${url}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : null) as never };
  };
  return { child, apiUrl, logs, exited, api };
}
