import { execFile, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { ImapFlow } from 'imapflow';
import type { Account } from './dovecot.js';

/**
 * A Dovecot of the test's own (scripts/dovecot.sh in a fresh directory), for tests that stop
 * and restart the server: the shared instance serves every other test file at the same time
 * and must stay up. Restarts keep the ports and the mail.
 */

const run = promisify(execFile);
const script = fileURLToPath(new URL('../../scripts/dovecot.sh', import.meta.url));

/**
 * Runs scripts/dovecot.sh with its output in a file: the Dovecot it starts inherits the
 * script's stdout, so a pipe would never see end-of-file.
 */
function dovecotScript(dir: string, args: string[]): Promise<void> {
  const out = fs.openSync(path.join(dir, 'script.log'), 'a');
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [script, ...args], { stdio: ['ignore', out, out] });
    child.on('error', reject);
    child.on('exit', (code) => {
      fs.closeSync(out);
      if (code === 0) resolve();
      else reject(new Error(`dovecot.sh ${args[0]} exited with ${code}: ${fs.readFileSync(path.join(dir, 'script.log'), 'utf8').slice(-500)}`));
    });
  });
}

export interface PrivateDovecot {
  host: string;
  port: number;
  dir: string;
  log: string;
  addUser(prefix: string): Promise<Account>;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** APPENDs a message as `account` (plain loopback login). */
  append(account: Account, folder: string, raw: string, flags?: string[]): Promise<void>;
  /** Runs doveadm against this instance. */
  doveadm(...args: string[]): Promise<string>;
}

export async function startPrivateDovecot(t: Test): Promise<PrivateDovecot> {
  // short and world-searchable: the mail user must reach DIR/mail, sockets live under DIR/run
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msdc-'));
  fs.chmodSync(dir, 0o755);
  let ports: { port: number; tlsPort: number } | null = null;
  const start = async () => {
    const args = ['start', '--dir', dir, ...(ports ? ['--port', String(ports.port), '--tls-port', String(ports.tlsPort)] : [])];
    await dovecotScript(dir, args);
    const env = JSON.parse(fs.readFileSync(path.join(dir, 'env.json'), 'utf8')) as { port: number; tlsPort: number };
    ports = { port: env.port, tlsPort: env.tlsPort };
  };
  const stop = async () => {
    // End every session first: a stopped master leaves its imap processes serving their
    // clients for another ~10 s, during which mail would still flow through the old server
    await run('doveadm', ['-c', path.join(dir, 'dovecot.conf'), 'kick', '*']).catch(() => undefined);
    await dovecotScript(dir, ['stop', '--dir', dir]);
  };
  await start();
  t.teardown(async () => {
    await stop().catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return {
    host: '127.0.0.1',
    get port() {
      return ports!.port;
    },
    dir,
    log: path.join(dir, 'dovecot.log'),
    async addUser(prefix: string) {
      const user = `${prefix}-${crypto.randomBytes(4).toString('hex')}`;
      const pass = crypto.randomBytes(10).toString('hex');
      await dovecotScript(dir, ['add-user', user, pass, '--dir', dir]);
      return { user, pass, address: `${user}@example.com` };
    },
    stop,
    start,
    async append(account, folder, raw, flags = []) {
      const client = new ImapFlow({ host: '127.0.0.1', port: ports!.port, secure: false, doSTARTTLS: false, logger: false, auth: { user: account.user, pass: account.pass } });
      client.on('error', () => {});
      await client.connect();
      try {
        await client.append(folder, raw, flags);
      } finally {
        await client.logout().catch(() => client.close());
      }
    },
    async doveadm(...args: string[]) {
      const { stdout } = await run('doveadm', ['-c', path.join(dir, 'dovecot.conf'), ...args]);
      return stdout;
    },
  };
}
