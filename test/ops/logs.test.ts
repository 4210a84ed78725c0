import { spawn } from 'node:child_process';
import fs from 'node:fs';
import t from 'tap';
import { cliPath, writeServeConfig } from '../helpers/cli.js';
import { waitUntil } from '../helpers/daemon.js';
import { daemonLogFile } from '../helpers/log-capture.js';

/** Logs are JSON lines for machines, and readable lines for people with --pretty or a terminal. */

/** Runs `serve` (optionally under `script`, which gives it a terminal) until it logged its start. */
async function serveOutput(t: Parameters<typeof writeServeConfig>[0], args: string[], tty: boolean): Promise<string> {
  const setup = await writeServeConfig(t);
  const cmd = [process.execPath, cliPath, 'serve', '--config', setup.configFile, ...args];
  // `script` runs the command on a pseudo-terminal: stdout.isTTY is true inside
  const child = tty
    ? spawn('script', ['-qfec', cmd.map((a) => `'${a}'`).join(' '), '/dev/null'], { env: { PATH: process.env.PATH ?? '', TERM: 'dumb' }, stdio: ['pipe', 'pipe', 'pipe'], detached: true })
    : spawn(cmd[0]!, cmd.slice(1), { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise((r) => child.on('exit', r));
  // the whole group: `script` and the daemon under it
  const stop = () => {
    try {
      process.kill(-child.pid!, 'SIGTERM');
    } catch {
      // already gone
    }
    return exited;
  };
  t.teardown(stop);
  await waitUntil(() => out.includes('mailsync started'), `the start line (output so far: ${out.slice(0, 300)})`, 30_000);
  await stop();
  // for the suite's log scan (test/setup/stop-servers.ts)
  fs.writeFileSync(daemonLogFile(tty ? 'serve-tty' : 'serve'), out);
  return out;
}

t.test('JSON lines when stdout is not a terminal', async (t) => {
  const out = await serveOutput(t, [], false);
  const lines = out.split('\n').filter(Boolean);
  for (const l of lines) t.doesNotThrow(() => JSON.parse(l), `a JSON line: ${l.slice(0, 60)}`);
  const started = lines.map((l) => JSON.parse(l) as { msg: string; level: number; service: string }).find((l) => l.msg === 'mailsync started');
  t.equal(started?.service, 'mailsync');
  t.equal(started?.level, 30, 'pino levels (30 = info)');
});

t.test('--pretty prints lines for people', async (t) => {
  const out = await serveOutput(t, ['--pretty'], false);
  const line = out.split('\n').find((l) => l.includes('mailsync started'))!;
  t.throws(() => JSON.parse(line), 'not JSON');
  t.match(line, /INFO.*mailsync started/, 'a level name and the message');
});

t.test('a terminal on stdout gets the readable lines without --pretty', async (t) => {
  const out = await serveOutput(t, [], true);
  const line = out.split('\n').find((l) => l.includes('mailsync started'))!;
  t.notMatch(line.trim(), /^\{/, 'not JSON');
  t.match(line, /INFO.*mailsync started/);
});
