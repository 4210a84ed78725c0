import crypto from 'node:crypto';
import { MailsyncError } from '../errors.js';
import type { Keyring } from './keyring.js';

/**
 * Encryption at rest: AES-256-GCM under the keys of a keyring that never lives in the store.
 * Separate subkeys (HKDF) per purpose (credentials, content), so one purpose never reuses
 * another's key stream.
 *
 * Sealed formats:
 * - version 1 (written before keyrings existed): `1 | iv(12) | tag(16) | ciphertext`, always
 *   under key 1, the key of the one-line key file;
 * - version 2: `2 | keyId(uint32 BE) | iv(12) | tag(16) | ciphertext`, the first five bytes
 *   authenticated as associated data, so a value cannot be passed off as sealed under another
 *   key id.
 */

const V1 = 1;
const V2 = 2;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** HKDF-SHA256 subkey of a master key for one purpose. */
export function deriveKey(master: Buffer, info: string): Buffer {
  return Buffer.from(crypto.hkdfSync('sha256', master, Buffer.alloc(0), info, 32));
}

/** The key id a sealed value was sealed under, or null when the bytes are not in a sealed format. */
export function sealedKeyId(sealed: Buffer): number | null {
  if (sealed[0] === V1 && sealed.length >= 1 + IV_BYTES + TAG_BYTES) return 1;
  if (sealed[0] === V2 && sealed.length >= 5 + IV_BYTES + TAG_BYTES) return sealed.readUInt32BE(1);
  return null;
}

export class Sealer {
  readonly #keyring: Keyring;
  readonly #purpose: string;
  /**
   * Subkeys by key id. A key retired from the keyring stays here until the process ends, so a
   * read that began before the retirement (an iterator's snapshot) can still finish.
   */
  readonly #subkeys = new Map<number, Buffer>();

  constructor(keyring: Keyring, purpose: string) {
    this.#keyring = keyring;
    this.#purpose = purpose;
  }

  #subkey(id: number): Buffer {
    let k = this.#subkeys.get(id);
    if (!k) {
      k = deriveKey(this.#keyring.key(id), `mailsync:${this.#purpose}`);
      this.#subkeys.set(id, k);
    }
    return k;
  }

  /** Seals under the keyring's current key. */
  seal(plain: Buffer): Buffer {
    const id = this.#keyring.current;
    const header = Buffer.alloc(5);
    header[0] = V2;
    header.writeUInt32BE(id, 1);
    const iv = crypto.randomBytes(IV_BYTES);
    const cipher = crypto.createCipheriv('aes-256-gcm', this.#subkey(id), iv);
    cipher.setAAD(header);
    const ct = Buffer.concat([cipher.update(plain), cipher.final()]);
    return Buffer.concat([header, iv, cipher.getAuthTag(), ct]);
  }

  open(sealed: Buffer): Buffer {
    const id = sealedKeyId(sealed);
    if (id === null) throw new MailsyncError('MAILSYNC_ERR_DECRYPT', 'a stored secret is not in the sealed format');
    const start = sealed[0] === V1 ? 1 : 5;
    const iv = sealed.subarray(start, start + IV_BYTES);
    const tag = sealed.subarray(start + IV_BYTES, start + IV_BYTES + TAG_BYTES);
    const decipher = crypto.createDecipheriv('aes-256-gcm', this.#subkey(id), iv);
    if (start === 5) decipher.setAAD(sealed.subarray(0, 5));
    decipher.setAuthTag(tag);
    try {
      return Buffer.concat([decipher.update(sealed.subarray(start + IV_BYTES + TAG_BYTES)), decipher.final()]);
    } catch {
      throw new MailsyncError('MAILSYNC_ERR_DECRYPT', `stored data cannot be decrypted with key ${id} of ${this.#keyring.source} (was the key file replaced?)`);
    }
  }
}

/** Keyed hash of an id, so pending references cannot be matched against a list of known ids. */
export class IdHasher {
  readonly #key: Buffer;

  /** `key`: the keyring's id-hash key (derived once from the first key; it never rotates). */
  constructor(key: Buffer) {
    this.#key = key;
  }

  hash(id: string): string {
    return crypto.createHmac('sha256', this.#key).update(id).digest('base64url').slice(0, 22);
  }
}
