import crypto from 'node:crypto';
import { headerEnd } from '../threads/headers.js';
import { normaliseId, parseSingleId } from '../threads/message-ids.js';

/**
 * What the relay changes in a submitted message, and nothing more: the `X-Mailsync-*`
 * instructions are read and removed, the message gets exactly one Message-ID (the ATS's own
 * when it is in an ATS domain, else a stamped one) and a Date when it has none (RFC 6409 §8
 * lets a submission server add both). Every other byte is passed on as it came.
 */

/** A refusal with its SMTP reply code; the text names the problem for the ATS's developers. */
export class SubmissionError extends Error {
  readonly responseCode: number;

  constructor(responseCode: number, message: string) {
    super(message);
    this.name = 'SubmissionError';
    this.responseCode = responseCode;
  }
}

const ID_CHARS = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Stamped Message-IDs: `<{random}.{token}@{domain}>`, where the token is a keyed MAC of the
 * random part. Any id in an ATS domain is tracked; the token additionally proves that this
 * installation made the id, so replies to it are still recognised after the thread record was
 * lost or the ATS domains were changed. Lower-case hex only: some systems fold the case of ids.
 */
export class MessageIdStamper {
  readonly #key: Buffer;

  /** `key`: the keyring's stamp key (derived once from the first key; stamps outlive key rotations). */
  constructor(key: Buffer) {
    this.#key = key;
  }

  #token(random: string): string {
    return crypto.createHmac('sha256', this.#key).update(random).digest('hex').slice(0, 12);
  }

  create(domain: string): string {
    const random = `${Date.now().toString(36)}${crypto.randomBytes(8).toString('hex')}`;
    return `<${random}.${this.#token(random)}@${domain}>`;
  }

  /** True for an id (normalised, no brackets) made by `create` with this key. */
  verify(normId: string): boolean {
    const m = /^([0-9a-z]{16,40})\.([0-9a-f]{12})@/.exec(normId);
    if (!m) return false;
    const expected = Buffer.from(this.#token(m[1]!));
    const got = Buffer.from(m[2]!);
    return crypto.timingSafeEqual(expected, got);
  }
}

export interface PreparedSubmission {
  /** The message as it will be sent. */
  raw: Buffer;
  /** Its one Message-ID, with brackets. */
  messageId: string;
  /** Message-IDs the submission carried that were not kept (replaced by the stamp). */
  replacedIds: string[];
  /** `X-Mailsync-User`, if given. */
  userId: string | null;
  /** `X-Mailsync-Candidate` (all such headers, comma-separated ids), de-duplicated. */
  candidateIds: string[];
}

export interface PrepareOptions {
  isAtsId: (normId: string) => boolean;
  newMessageId: () => string;
  now?: Date;
}

interface RawField {
  /** Lower-case name, '' for a line that is not a field. */
  key: string;
  /** The field's lines as written (folding kept), latin1 so bytes survive. */
  text: string;
}

function splitFields(headerText: string): RawField[] {
  const fields: RawField[] = [];
  for (const line of headerText.split(/\r?\n/)) {
    if (line === '') continue;
    const prev = fields[fields.length - 1];
    if (/^[ \t]/.test(line) && prev) {
      prev.text += `\n${line}`;
      continue;
    }
    const colon = line.indexOf(':');
    fields.push({ key: colon > 0 ? line.slice(0, colon).trim().toLowerCase() : '', text: line });
  }
  return fields;
}

const unfold = (f: RawField) => f.text.slice(f.text.indexOf(':') + 1).replace(/\r?\n[ \t]/g, ' ').trim();

/** RFC 5322 date-time in UTC: `Tue, 01 Sep 2026 10:00:00 +0000`. */
export function rfc5322Date(d: Date): string {
  return d.toUTCString().replace(/GMT$/, '+0000');
}

export function prepareSubmission(raw: Buffer, opts: PrepareOptions): PreparedSubmission {
  const end = headerEnd(raw);
  const head = raw.subarray(0, end).toString('latin1');
  const body = raw.subarray(end);
  const eol = head.includes('\r\n') ? '\r\n' : '\n';
  const fields = splitFields(head);

  let userId: string | null = null;
  const candidateIds: string[] = [];
  const ids: string[] = [];
  const kept: RawField[] = [];
  for (const f of fields) {
    if (f.key === 'x-mailsync-user') {
      const v = unfold(f);
      if (!ID_CHARS.test(v)) throw new SubmissionError(550, `5.6.0 X-Mailsync-User: "${v.slice(0, 140)}" is not a user id (1 to 128 of A-Z a-z 0-9 . _ : -)`);
      if (userId !== null && userId !== v) throw new SubmissionError(550, '5.6.0 X-Mailsync-User appears twice with different users');
      userId = v;
    } else if (f.key === 'x-mailsync-candidate') {
      for (const part of unfold(f).split(',').map((s) => s.trim()).filter(Boolean)) {
        if (!ID_CHARS.test(part)) throw new SubmissionError(550, `5.6.0 X-Mailsync-Candidate: "${part.slice(0, 140)}" is not a candidate id (1 to 128 of A-Z a-z 0-9 . _ : -)`);
        if (!candidateIds.includes(part)) candidateIds.push(part);
      }
    } else if (f.key.startsWith('x-mailsync-')) {
      // any other instruction header is ours too, and never leaves the daemon
    } else if (f.key === 'message-id') {
      const id = parseSingleId(unfold(f));
      if (id) ids.push(id);
    } else kept.push(f);
  }

  const own = ids.find((id) => opts.isAtsId(normaliseId(id)));
  const messageId = own ?? opts.newMessageId();
  const replacedIds = ids.filter((id) => normaliseId(id) !== normaliseId(messageId));
  const out = [`Message-ID: ${messageId}`];
  if (!kept.some((f) => f.key === 'date')) out.push(`Date: ${rfc5322Date(opts.now ?? new Date())}`);
  for (const f of kept) out.push(f.text.replace(/\n/g, eol));
  const header = Buffer.from(`${out.join(eol)}${eol}${eol}`, 'latin1');
  return { raw: Buffer.concat([header, body]), messageId, replacedIds, userId, candidateIds };
}
