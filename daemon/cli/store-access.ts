import fs from 'node:fs';
import path from 'node:path';
import { Level } from 'level';
import type { Config } from '../config/load.js';
import { MailsyncError } from '../errors.js';
import { Keyring } from '../store/keyring.js';
import { Store } from '../store/store.js';
import { Outbox } from '../store/outbox.js';
import { Accounts } from '../store/accounts.js';
import { normaliseAddress } from '../threads/addresses.js';

/**
 * How a command reaches the store. LevelDB lets one process open it: when no daemon runs the
 * command opens the store itself; when the daemon holds it, the command asks the daemon's API
 * (at api.host:api.port, with the first of api.tokens) instead.
 */

export type StoreAccess =
  | { via: 'store'; store: Store; outbox: Outbox; accounts: Accounts; close(): Promise<void> }
  | { via: 'daemon'; daemon: DaemonClient; close(): Promise<void> };

/** What `--help` of the commands that use it says. */
export const ACCESS_HELP = 'With the daemon stopped it opens the store itself; while the daemon runs (it holds the store: LevelDB allows one process) it asks the daemon\'s API at api.host:api.port with the first token of api.tokens, so run it with the same configuration as the daemon.';

export class DaemonClient {
  readonly baseUrl: string;
  readonly #token: string;

  constructor(baseUrl: string, token: string) {
    this.baseUrl = baseUrl;
    this.#token = token;
  }

  async request(method: string, urlPath: string, body?: unknown): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}${urlPath}`, {
        method,
        headers: { authorization: `Bearer ${this.#token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      const code = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new MailsyncError('MAILSYNC_ERR_UNREACHABLE', `the store is in use by a running daemon, but its API at ${this.baseUrl} does not answer (${code}); check api.host and api.port, or wait for the other mailsync command to finish`);
    }
    if (!res.ok) {
      const text = await res.text();
      let message = text.slice(0, 300);
      try {
        message = (JSON.parse(text) as { error: { message: string } }).error.message;
      } catch {
        // not the API's error shape: show the start of the body
      }
      const hint = res.status === 401 ? ' (the first of api.tokens in this configuration is not accepted by the running daemon)' : '';
      throw Object.assign(new MailsyncError('MAILSYNC_ERR_UNREACHABLE', `the daemon answered ${res.status}: ${message}${hint}`), { status: res.status });
    }
    return res;
  }

  async json<T>(method: string, urlPath: string, body?: unknown): Promise<T> {
    return (await (await this.request(method, urlPath, body)).json()) as T;
  }
}

/** `http://host:port` of the daemon's API as configured, for a client on this machine. */
export function apiBaseUrl(config: Config): string {
  if (config.api.port === 0) {
    throw new MailsyncError('MAILSYNC_ERR_CONFIG', 'the store is in use by a running daemon whose api.port is 0 (a random port): set api.port so commands can reach it');
  }
  const host = config.api.host === '0.0.0.0' ? '127.0.0.1' : config.api.host === '::' ? '::1' : config.api.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${config.api.port}`;
}

function isLocked(err: unknown): boolean {
  for (let e = err as { code?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (e.code === 'LEVEL_LOCKED') return true;
  }
  return false;
}

/** Whether another process (the daemon) holds the store, found by trying to open it. */
export async function storeLocked(storePath: string): Promise<boolean> {
  const db = new Level(storePath, { createIfMissing: false });
  try {
    await db.open();
    await db.close();
    return false;
  } catch (err) {
    return isLocked(err);
  }
}

export function storeExists(storePath: string): boolean {
  return fs.existsSync(path.join(storePath, 'CURRENT'));
}

/** The keys, without creating a key file: a command must never make a new key for an old store. */
export function existingKeyring(config: Config): Keyring | null {
  if (config.store.key) return Keyring.load({ key: config.store.key, keyFile: config.store.keyFile }).keyring;
  return fs.existsSync(config.store.keyFile) ? Keyring.load({ keyFile: config.store.keyFile }).keyring : null;
}

export async function openStoreAccess(config: Config): Promise<StoreAccess> {
  const storePath = config.store.path;
  if (!storeExists(storePath)) {
    throw new MailsyncError('MAILSYNC_ERR_CONFIG', `there is no store at ${storePath} (store.path); run the command with the daemon's configuration`);
  }
  const viaDaemon = (): StoreAccess => ({ via: 'daemon', daemon: new DaemonClient(apiBaseUrl(config), config.api.tokens[0]!), close: async () => {} });
  const keyring = existingKeyring(config);
  if (!keyring) {
    if (await storeLocked(storePath)) return viaDaemon();
    throw new MailsyncError('MAILSYNC_ERR_KEY', `the store's key file ${config.store.keyFile} (store.keyFile) does not exist, and without it the store cannot be read`);
  }
  let store: Store;
  try {
    store = await Store.open({ path: storePath, keyring, encryptContent: config.store.encryptContent });
  } catch (err) {
    if (isLocked(err)) return viaDaemon();
    throw err;
  }
  const outbox = new Outbox(store, { push: !!config.webhooks.url });
  await outbox.init();
  const accounts = new Accounts(store, outbox, (a) => normaliseAddress(a));
  return { via: 'store', store, outbox, accounts, close: () => store.close() };
}

export function describeAccess(access: StoreAccess, config: Config): string {
  return access.via === 'daemon' ? `read from the running daemon at ${access.daemon.baseUrl}` : `read from the store at ${config.store.path} (no daemon running)`;
}
