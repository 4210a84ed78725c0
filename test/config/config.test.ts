import fs from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { loadConfig } from '../../daemon/config/load.js';
import { exampleYaml, markdownReference } from '../../daemon/config/reference.js';
import { schema } from '../../daemon/config/schema.js';
import { tempDir } from '../helpers/stack.js';
import { waitUntil } from '../helpers/daemon.js';
import { daemonLogFile } from '../helpers/log-capture.js';

/** What an operator sees from `mailsync config check` and `mailsync serve`: the built CLI, run as a process. */

const root = fileURLToPath(new URL('../../', import.meta.url));
const cli = path.join(root, 'dist/daemon/cli/main.js');

function run(args: string[], env: Record<string, string> = {}, cwd = root) {
  const res = spawnSync(process.execPath, [cli, ...args], { cwd, env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8', timeout: 20_000 });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}

function write(t: Parameters<typeof tempDir>[0], name: string, text: string): string {
  const file = path.join(tempDir(t), name);
  fs.writeFileSync(file, text);
  return file;
}

t.test('config/example.yaml and docs/config-reference.md match the schema', async (t) => {
  t.equal(fs.readFileSync(path.join(root, 'config/example.yaml'), 'utf8'), exampleYaml(), 'example.yaml is current (run `npm run gen:config`)');
  t.equal(fs.readFileSync(path.join(root, 'docs/config-reference.md'), 'utf8'), markdownReference(), 'config-reference.md is current (run `npm run gen:config`)');
  const check = run(['config', 'check', '--config', 'config/example.yaml']);
  t.equal(check.code, 0, 'the example itself is valid');
});

t.test('every option has a doc and a default, and its env var is documented', async (t) => {
  const reference = markdownReference();
  const walk = (node: Record<string, unknown>, prefix: string[]): void => {
    for (const [k, v] of Object.entries(node)) {
      const p = [...prefix, k];
      const opt = v as Record<string, unknown>;
      if (opt && typeof opt === 'object' && 'doc' in opt && 'default' in opt) {
        t.ok(String(opt.doc).length > 10, `${p.join('.')} has a doc`);
        t.ok(reference.includes(`MAILSYNC_${p.join('_').toUpperCase()}`), `${p.join('.')} env var is in the reference`);
      } else {
        walk(opt, p);
      }
    }
  };
  walk(schema as unknown as Record<string, unknown>, []);
});

t.test('config check: bad input is an error naming the key and the problem', async (t) => {
  const unknown = run(['config', 'check', '--config', write(t, 'a.yaml', 'api:\n  prot: 9000\n')]);
  t.equal(unknown.code, 1, 'exit 1 for an unknown key');
  t.match(unknown.stderr, /api\.prot: unknown option/, 'names the unknown key');

  const badPort = run(['config', 'check', '--config', write(t, 'b.yaml', 'api:\n  port: "eighty"\n')]);
  t.not(badPort.code, 0);
  t.match(badPort.stderr, /api\.port/, 'names the key with a bad value');

  const badJson = run(['config', 'check', '--config', write(t, 'c.json', '{"api": {')]);
  t.not(badJson.code, 0);
  t.match(badJson.stderr, /c\.json cannot be read/, 'says the file cannot be read');

  const missing = run(['config', 'check', '--config', 'no/such/file.yaml']);
  t.not(missing.code, 0);
  t.match(missing.stderr, /does not exist/);

  const secret = 'wh-secret-never-printed';
  const webhookWithoutSecret = run(['config', 'check', '--config', write(t, 'd.yaml', 'webhooks:\n  url: https://ats.example.com/hooks\n')]);
  t.not(webhookWithoutSecret.code, 0);
  t.match(webhookWithoutSecret.stderr, /webhooks\.secret: must be set/);

  for (const out of [unknown, badPort, badJson, missing]) t.notMatch(out.stderr, /\n\s+at .+:\d+:\d+/, 'no stack trace');

  const ok = run(['config', 'check', '--config', write(t, 'e.yaml', `api:\n  tokens: [tok-never-printed]\nwebhooks:\n  url: https://ats.example.com/hooks\n  secret: ${secret}\n`)]);
  t.equal(ok.code, 0, 'a valid file passes');
  t.notOk(ok.stdout.includes(secret) || ok.stdout.includes('tok-never-printed'), 'secrets are redacted in the effective config');
  const effective = JSON.parse(ok.stdout) as { webhooks: { url: string } };
  t.equal(effective.webhooks.url, 'https://ats.example.com/hooks', 'the effective config is printed as JSON');

  const badSecret = run(['config', 'check', '--config', write(t, 'f.yaml', 'store:\n  key: not-hex-master-key-value\n')]);
  t.not(badSecret.code, 0);
  t.match(badSecret.stderr, /store\.key: must be 64 hexadecimal/, 'names the bad key');
  t.notOk(badSecret.stderr.includes('not-hex-master-key-value'), 'a sensitive value is not printed even when it is the bad one');
  const envSecret = run(['config', 'check'], { MAILSYNC_WEBHOOKS_URL: 'https://ats.example.com/h', MAILSYNC_WEBHOOKS_SECRET: 'env-secret-never-printed' });
  t.equal(envSecret.code, 0, 'secrets may come from the environment');
  t.match(envSecret.stdout, /ats\.example\.com\/h/);
  t.notOk(envSecret.stdout.includes('env-secret-never-printed'), 'a secret from the environment is redacted too');
});

t.test('environment variables: MAILSYNC_ + key path', async (t) => {
  const { config } = loadConfig({ env: { MAILSYNC_API_PORT: '9123', MAILSYNC_SYNC_SENTPOLLSECONDS: '7' } });
  t.equal(config.api.port, 9123);
  t.equal(config.sync.sentPollSeconds, 7);
  const cli = run(['config', 'check'], { MAILSYNC_API_PORT: 'not-a-port' });
  t.not(cli.code, 0);
  t.match(cli.stderr, /api\.port/, 'an env value is validated like a file value');
  t.throws(() => Object.assign(config.api, { port: 1 }), 'the loaded config is frozen');
});

t.test('serve with no file runs on the embedded defaults: store ./data, API on 127.0.0.1:8025', async (t) => {
  const cwd = tempDir(t);
  // 8025 may be taken on a shared machine: only then fall back to checking the defaults in-process
  const free = await new Promise<boolean>((resolve) => {
    const s = net.createServer().once('error', () => resolve(false)).listen(8025, '127.0.0.1', () => s.close(() => resolve(true)));
  });
  if (!free) {
    const { config } = loadConfig({ env: {} });
    t.equal(config.api.port, 8025);
    t.equal(config.api.host, '127.0.0.1');
    t.equal(config.store.path, './data');
    return;
  }
  const child = spawn(process.execPath, [cli, 'serve'], { cwd, env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  const health = await waitUntil(async () => {
    const r = await fetch('http://127.0.0.1:8025/healthz').catch(() => null);
    return r?.ok ? r : null;
  }, `the daemon to answer on 127.0.0.1:8025 (output: ${out.slice(0, 500)})`);
  t.equal(health.status, 200, 'answers on 127.0.0.1:8025');
  t.ok(fs.existsSync(path.join(cwd, 'data')), 'created ./data');
  // a second daemon on the same store says why it cannot start
  const second = spawnSync(process.execPath, [cli, 'serve'], { cwd, env: { PATH: process.env.PATH ?? '', MAILSYNC_API_PORT: '0' }, encoding: 'utf8', timeout: 20_000 });
  t.equal(second.status, 1, 'a second serve on the same store exits 1');
  t.match(second.stdout + second.stderr, /in use by another mailsync process/, 'and says the store is in use');
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM stops it cleanly with exit 0');
  // for the suite's log scan (test/setup/stop-servers.ts)
  fs.writeFileSync(daemonLogFile('serve-defaults'), out);
  for (const line of out.split('\n').filter((l) => l.startsWith('{'))) JSON.parse(line);
  t.pass('every log line is JSON');
});

t.test('an API port already in use stops serve with a message that says which option to change', async (t) => {
  const cwd = tempDir(t);
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.teardown(() => blocker.close());
  const port = (blocker.address() as net.AddressInfo).port;
  const res = spawnSync(process.execPath, [cli, 'serve'], { cwd, env: { PATH: process.env.PATH ?? '', MAILSYNC_API_PORT: String(port) }, encoding: 'utf8', timeout: 20_000 });
  t.equal(res.status, 1, 'serve exits 1');
  t.match(res.stdout + res.stderr, new RegExp(`127\\.0\\.0\\.1:${port} is already in use.*MAILSYNC_API_PORT`), 'and names the address and the option');
});

t.test('booleans from env or file: only true/false spellings, never "anything but false is true"', async (t) => {
  for (const [value, expected] of [['0', false], ['no', false], ['off', false], ['false', false], ['1', true], ['yes', true], ['on', true], ['TRUE', true]] as const) {
    t.equal(loadConfig({ env: { MAILSYNC_SYNC_ALLOWPLAINTEXT: value } }).config.sync.allowPlaintext, expected, `MAILSYNC_SYNC_ALLOWPLAINTEXT=${value} → ${expected}`);
  }
  t.equal(loadConfig({ env: { MAILSYNC_STORE_ENCRYPTCONTENT: 'no' } }).config.store.encryptContent, false, 'encryptContent can be switched off with "no"');
  t.throws(() => loadConfig({ env: { MAILSYNC_SYNC_ALLOWPLAINTEXT: 'maybe' } }), /sync\.allowPlaintext: must be true or false .*\(from MAILSYNC_SYNC_ALLOWPLAINTEXT="maybe"\)/, 'an unknown spelling is an error naming the variable and value');
  const file = write(t, 'bool.yaml', 'sync:\n  allowPlaintext: maybe\n');
  const res = run(['config', 'check', '--config', file]);
  t.equal(res.code, 1, '"maybe" in a file is invalid');
  t.match(res.stderr, /sync\.allowPlaintext: must be true or false/);
});

t.test('numbers that are not whole numbers are refused with a message that says so', async (t) => {
  const file = write(t, 'nums.yaml', 'api:\n  port: 8025.5\nsync:\n  fetchBatchSize: eighty\n');
  const res = run(['config', 'check', '--config', file]);
  t.equal(res.code, 1, 'the file is invalid');
  t.match(res.stderr, /api\.port: must be a whole number from 0 to 65535/, 'a fractional port is named as such');
  t.match(res.stderr, /sync\.fetchBatchSize: must be a whole number/, 'a word where a count belongs is named as such');
  t.equal(loadConfig({ env: { MAILSYNC_API_PORT: ' 9000 ' } }).config.api.port, 9000, 'a port from the environment is read as a number');
});

t.test('bad values from the environment name the variable; secrets stay hidden', async (t) => {
  const res = run(['config', 'check'], { MAILSYNC_API_PORT: 'abc' });
  t.equal(res.code, 1);
  t.match(res.stderr, /api\.port: .*\(from MAILSYNC_API_PORT="abc"\)/);
  t.throws(() => loadConfig({ env: { MAILSYNC_API_TOKENS: '' } }), /api\.tokens: must be a list of at least one non-empty string/, 'no tokens at all is an error, not a daemon that refuses everything');
  let message = '';
  try {
    loadConfig({ env: { MAILSYNC_STORE_KEY: 'short-secret-key' } });
  } catch (err) {
    message = (err as Error).message;
  }
  t.match(message, /store\.key: must be 64 hexadecimal characters/, 'a bad key is refused');
  t.notOk(message.includes('short-secret-key'), 'and the secret is not echoed');
});

t.test('warnings for valid but risky settings: default secrets, misspelt variables', async (t) => {
  const { warnings } = loadConfig({ env: { MAILSYNC_API_PROT: '9000' } });
  t.ok(warnings.some((w) => /MAILSYNC_API_PROT is not an option/.test(w)), 'a misspelt variable is reported');
  t.ok(warnings.some((w) => /api\.tokens still holds the default token/.test(w)), 'the default API token is reported');
  const quiet = loadConfig({ env: {}, overrides: { api: { tokens: ['a-real-token'] }, smtp: { submission: { port: 0 } } } });
  t.same(quiet.warnings, [], 'a configured daemon has no warnings');
  const res = run(['config', 'check'], { MAILSYNC_API_PROT: '9000' });
  t.equal(res.code, 0, 'warnings do not make the config invalid');
  t.match(res.stderr, /warning: environment variable MAILSYNC_API_PROT/);
  const bare = run(['config']);
  t.equal(bare.code, 2);
  t.match(bare.stderr, /needs a subcommand: mailsync config check/);
});
