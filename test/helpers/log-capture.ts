import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Secret } from './log-scan.js';
import { isOption, schema, type SchemaTree } from '../../daemon/config/schema.js';

/**
 * Every daemon a test starts (in this process or as a child) writes its log to a file in the
 * run's log directory, and every secret a test hands to a daemon (config tokens, passwords and
 * OAuth tokens in consent bodies, tokens the fake provider issues) is noted there too. The tap
 * `after` script (test/setup/stop-servers.ts) scans all the logs of the run for all the noted
 * secrets and fails the run naming file, line and kind of secret.
 *
 * The directory is per tap run (`.run/test-logs/run-<tap runner pid>`), so runs in other
 * checkouts or at the same time do not mix.
 */

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const LOG_ROOT = path.join(REPO_ROOT, '.run', 'test-logs');

/**
 * Text that test mail carries in its body (the helpers' messages): a log that shows it holds
 * message content.
 */
export const BODY_MARKER = 'bodymark-4e1f93c2';

/** The run's directory: the tap runner's, or this process's when a file runs on its own. */
export function runDir(runnerPid: number = process.env.TAP === '1' ? process.ppid : process.pid): string {
  return path.join(LOG_ROOT, `run-${runnerPid}`);
}

let counter = 0;

/** A fresh log file path for one daemon of this test file. */
export function daemonLogFile(label: string): string {
  const dir = runDir();
  fs.mkdirSync(dir, { recursive: true });
  const test = path.relative(REPO_ROOT, process.argv[1] ?? 'unknown').replace(/\.test\.[cm]?[jt]s$/, '').replace(/[^A-Za-z0-9]+/g, '_');
  return path.join(dir, `${test}.${process.pid}.${++counter}.${label}.log`);
}

/**
 * Appends to a log file synchronously (nothing is lost when the test process ends right after),
 * and ignores writes after `close`.
 */
export function logFileSink(file: string): { write(chunk: string | Buffer): void; close(): void } {
  let fd: number | null = fs.openSync(file, 'a');
  return {
    write(chunk) {
      if (fd !== null) fs.writeSync(fd, typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    },
    close() {
      if (fd !== null) fs.closeSync(fd);
      fd = null;
    },
  };
}

/**
 * The defaults of sensitive options ("change-me") are printed in the documentation and in the
 * daemon's warning that they are still in use: not secrets, so not looked for.
 */
export const PUBLIC_DEFAULTS: ReadonlySet<string> = (() => {
  const out = new Set<string>();
  const walk = (tree: SchemaTree) => {
    for (const node of Object.values(tree)) {
      if (isOption(node)) {
        const spec = node;
        if (!spec.sensitive) continue;
        const found: string[] = [];
        const collect = (v: unknown) => {
          if (typeof v === 'string') found.push(v);
          else if (Array.isArray(v)) v.forEach(collect);
          // a login list: the password is the secret, the user name is not
          else if (v && typeof v === 'object' && 'pass' in v) collect((v as { pass: unknown }).pass);
        };
        collect(spec.default);
        for (const v of found) if (v) out.add(v);
      } else walk(node);
    }
  };
  walk(schema as unknown as SchemaTree);
  return out;
})();

const noted = new Set<string>();

/** Notes a secret that a daemon of this run was given. */
export function noteSecret(kind: string, value: unknown): void {
  if (typeof value !== 'string' || !value || PUBLIC_DEFAULTS.has(value)) return;
  const key = `${kind}\0${value}`;
  if (noted.has(key)) return;
  noted.add(key);
  const dir = runDir();
  fs.mkdirSync(dir, { recursive: true });
  fs.appendFileSync(path.join(dir, `secrets.${process.pid}.jsonl`), `${JSON.stringify({ kind, value } satisfies Secret)}\n`);
}

/** Field names that hold secrets in configs and API bodies, and what to call them. */
const SECRET_FIELDS: Record<string, string> = {
  pass: 'password',
  password: 'password',
  accessToken: 'oauth access token',
  access_token: 'oauth access token',
  refreshToken: 'oauth refresh token',
  refresh_token: 'oauth refresh token',
  tokens: 'api token',
  metricsToken: 'api token',
  secret: 'webhook secret',
  clientSecret: 'oauth client secret',
};

/** Notes every secret found in a config or request body, by field name, at any depth. */
export function noteSecretsIn(value: unknown): void {
  if (Array.isArray(value)) {
    for (const v of value) noteSecretsIn(v);
    return;
  }
  if (!value || typeof value !== 'object') return;
  for (const [k, v] of Object.entries(value)) {
    const kind = SECRET_FIELDS[k];
    if (kind && typeof v === 'string') noteSecret(kind, v);
    else if (kind && Array.isArray(v)) for (const item of v) noteSecret(kind, item);
    else noteSecretsIn(v);
  }
}

/** Every secret noted by any test process of the run. */
export function readNotedSecrets(dir: string): Secret[] {
  if (!fs.existsSync(dir)) return [];
  const out: Secret[] = [];
  for (const name of fs.readdirSync(dir).filter((f) => /^secrets\..*\.jsonl$/.test(f))) {
    for (const line of fs.readFileSync(path.join(dir, name), 'utf8').split('\n')) {
      if (line) out.push(JSON.parse(line) as Secret);
    }
  }
  return out;
}
