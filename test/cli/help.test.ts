import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';

/** `mailsync --help` and the command table, seen as an operator sees them: the built CLI as a process. */

const root = fileURLToPath(new URL('../../', import.meta.url));
const cli = path.join(root, 'dist/daemon/cli/main.js');

function run(args: string[]) {
  const res = spawnSync(process.execPath, [cli, ...args], { cwd: root, env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8', timeout: 20_000 });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}

t.test('--help lists every command module, each with its own --help', async (t) => {
  const help = run(['--help']);
  t.equal(help.code, 0);
  const dir = path.join(root, 'dist/daemon/cli/commands');
  const modules = fs.readdirSync(dir).filter((f) => f.endsWith('.js'));
  t.ok(modules.length >= 2, 'there are command modules');
  for (const file of modules) {
    const { default: command } = (await import(path.join(dir, file))) as { default: { name: string; summary: string } };
    t.ok(help.stdout.includes(`mailsync ${command.name}`), `--help lists "${command.name}" (${file} is registered in cli/main.ts)`);
    t.ok(help.stdout.includes(command.summary), `with its summary`);
    const own = run([...command.name.split(' '), '--help']);
    t.equal(own.code, 0, `mailsync ${command.name} --help exits 0`);
    t.match(own.stdout, new RegExp(`^Usage: mailsync ${command.name}`), 'and starts with its usage line');
  }
});

t.test('mistakes in the command line say what is wrong and exit 2', async (t) => {
  const none = run([]);
  t.equal(none.code, 2, 'no command: usage on stderr, exit 2');
  t.match(none.stderr, /Usage:/);
  const unknown = run(['frobnicate']);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /unknown command "frobnicate"/);
  const group = run(['config']);
  t.equal(group.code, 2);
  t.match(group.stderr, /"mailsync config" needs a subcommand: mailsync config check/);
  const keys = run(['keys']);
  t.equal(keys.code, 2);
  t.match(keys.stderr, /"mailsync keys" needs a subcommand: mailsync keys status, mailsync keys rotate/);
  const batch = run(['keys', 'rotate', '--batch-size', '0']);
  t.equal(batch.code, 2);
  t.match(batch.stderr, /--batch-size must be a whole number from 1 to 10000, not "0"/);
  const extra = run(['serve', 'now']);
  t.equal(extra.code, 2);
  t.match(extra.stderr, /unexpected argument "now"/);
  const badOption = run(['config', 'check', '--frob']);
  t.equal(badOption.code, 2);
  t.match(badOption.stderr, /--frob/, 'an unknown option is named');
  const version = run(['--version']);
  t.equal(version.code, 0);
  t.match(version.stdout, /^\d+\.\d+\.\d+/);
});
