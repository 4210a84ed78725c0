import fs from 'node:fs';
import t from 'tap';
import { TOKEN } from '../helpers/daemon.js';
import { runCli, startServe, writeServeConfig } from '../helpers/cli.js';

/**
 * The key file as `mailsync serve` meets it after something went wrong with it: damaged, cut
 * short, missing, or another installation's. The daemon refuses to start before it writes
 * anything, names the file, and exits 78 so that a supervisor does not restart it in a loop;
 * with the right file back everything is there.
 */

t.test('a damaged, missing or foreign key file stops serve (exit 78) with an error naming it; nothing is lost', async (t) => {
  const setup = await writeServeConfig(t);
  const cfg = ['--config', setup.configFile];
  const serve = await startServe(t, setup);
  const api = async <T = Record<string, unknown>>(method: string, url: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const res = await fetch(`${setup.apiUrl}${url}`, { method, headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    return { status: res.status, body: (await res.json()) as T };
  };
  await api('PUT', '/v1/users/u1', { email: 'robin@example.com' });
  t.equal(await serve.stop(), 0);
  const good = fs.readFileSync(setup.keyFile, 'utf8');

  for (const [what, write, pattern] of [
    ['damaged', () => fs.writeFileSync(setup.keyFile, '{"format": "mailsync-keyring", "keys": ['), /is damaged: it is not valid JSON.*Put back your copy of it/],
    ['cut short', () => fs.writeFileSync(setup.keyFile, good.slice(0, 20)), /is damaged: it holds neither a key/],
    ['missing', () => fs.rmSync(setup.keyFile), /does not exist, but the store at .* does.*put the file back/],
    ['another installation\'s', () => fs.writeFileSync(setup.keyFile, `${'ab'.repeat(32)}\n`, { mode: 0o600 }), /does not belong to the store .*its key 1 is not the key 1 this store was sealed with/],
  ] as const) {
    write();
    const res = await runCli(['serve', ...cfg], { cwd: setup.dir });
    t.equal(res.code, 78, `${what} key file: serve exits 78 (no restart loop under systemd)`);
    t.ok((res.stdout + res.stderr).includes(setup.keyFile), 'the error names the file');
    t.match(res.stdout + res.stderr, pattern);
    if (what === 'missing') t.notOk(fs.existsSync(setup.keyFile), 'no new key was made for the existing store');
    const status = await runCli(['keys', 'status', ...cfg]);
    t.not(status.code, 0, 'keys status refuses too');
    t.notOk(status.stderr.includes('at Keyring') || status.stderr.includes('    at '), 'with a message, not a stack trace');
  }

  fs.writeFileSync(setup.keyFile, good, { mode: 0o600 });
  const again = await startServe(t, setup);
  t.equal((await api<{ email: string }>('GET', '/v1/users/u1')).body.email, 'robin@example.com', 'with the right key file back, the data is all there');
  await again.stop();
});
