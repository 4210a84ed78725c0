import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { MailsyncError } from '../errors.js';

/**
 * Encryption at rest: AES-256-GCM under a master key that never lives in the store. Separate
 * subkeys (HKDF) for credentials, content and id hashing, so one purpose never reuses
 * another's key stream.
 */

const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface KeySource {
  /** 64 hex characters; wins when set. */
  key?: string;
  /** Created with mode 0600 when missing. */
  keyFile: string;
}

/** Reads the master key, creating the key file on first start. */
export function loadMasterKey(src: KeySource): Buffer {
  if (src.key) {
    if (!/^[0-9a-f]{64}$/i.test(src.key)) throw new MailsyncError('MAILSYNC_ERR_KEY', 'store.key must be 64 hexadecimal characters');
    return Buffer.from(src.key, 'hex');
  }
  const file = path.resolve(src.keyFile);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const key = crypto.randomBytes(32).toString('hex');
    try {
      // 'wx': never overwrite a key another process created meanwhile
      fs.writeFileSync(file, key + '\n', { mode: 0o600, flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  const text = fs.readFileSync(file, 'utf8').trim();
  if (!/^[0-9a-f]{64}$/i.test(text)) {
    throw new MailsyncError('MAILSYNC_ERR_KEY', `the key file ${src.keyFile} must hold 64 hexadecimal characters`);
  }
  return Buffer.from(text, 'hex');
}

export class Sealer {
  readonly #key: Buffer;

  constructor(masterKey: Buffer, purpose: string) {
    this.#key = Buffer.from(crypto.hkdfSync('sha256', masterKey, Buffer.alloc(0), `mailsync:${purpose}`, 32));
  }

  /** version(1) | iv(12) | tag(16) | ciphertext */
  seal(plain: Buffer): Buffer {
    const iv = crypto.randomBytes(IV_BYTES);
    const cipher = crypto.createCipheriv('aes-256-gcm', this.#key, iv);
    const ct = Buffer.concat([cipher.update(plain), cipher.final()]);
    return Buffer.concat([Buffer.from([VERSION]), iv, cipher.getAuthTag(), ct]);
  }

  open(sealed: Buffer): Buffer {
    if (sealed.length < 1 + IV_BYTES + TAG_BYTES || sealed[0] !== VERSION) {
      throw new MailsyncError('MAILSYNC_ERR_DECRYPT', 'a stored secret is not in the sealed format');
    }
    const iv = sealed.subarray(1, 1 + IV_BYTES);
    const tag = sealed.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES);
    const decipher = crypto.createDecipheriv('aes-256-gcm', this.#key, iv);
    decipher.setAuthTag(tag);
    try {
      return Buffer.concat([decipher.update(sealed.subarray(1 + IV_BYTES + TAG_BYTES)), decipher.final()]);
    } catch {
      throw new MailsyncError('MAILSYNC_ERR_DECRYPT', 'stored data cannot be decrypted with this key (was store.keyFile replaced?)');
    }
  }
}

/** Keyed hash of an id, so pending references cannot be matched against a list of known ids. */
export class IdHasher {
  readonly #key: Buffer;

  constructor(masterKey: Buffer) {
    this.#key = Buffer.from(crypto.hkdfSync('sha256', masterKey, Buffer.alloc(0), 'mailsync:idhash', 32));
  }

  hash(id: string): string {
    return crypto.createHmac('sha256', this.#key).update(id).digest('base64url').slice(0, 22);
  }
}
