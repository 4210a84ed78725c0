/**
 * Raw header parsing. We read the id headers ourselves because mailparser mangles
 * comma-separated References, ids with comments and In-Reply-To with a phrase
 * (corpus cases B05, B47); and only an empty line ends a header block, never a
 * whitespace-only one (B03: Exchange emits " \r\n" as obsolete folding).
 */

export interface HeaderField {
  /** Name as written. */
  name: string;
  /** Lower-case name. */
  key: string;
  /** Unfolded value, leading whitespace trimmed, bytes read as UTF-8 (RFC 6532). */
  value: string;
  /** The value's bytes, kept only when they are not valid UTF-8 (raw 8-bit legacy charsets, B15). */
  bytes?: Buffer;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function decodeValue(latin1: string): { value: string; bytes?: Buffer } {
  if (!/[\x80-\xff]/.test(latin1)) return { value: latin1 };
  const bytes = Buffer.from(latin1, 'latin1');
  try {
    return { value: strictUtf8.decode(bytes) };
  } catch {
    return { value: bytes.toString('utf8'), bytes };
  }
}

/** Byte offset where the body starts (after the empty line), or the length when there is none (B26a). */
export function headerEnd(buf: Buffer): number {
  let lineStart = 0;
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] !== 0x0a) continue;
    // the line between lineStart and i (exclusive of CR) is empty: headers end here
    const lineLen = i - lineStart - (i > lineStart && buf[i - 1] === 0x0d ? 1 : 0);
    if (lineLen === 0) return i + 1;
    lineStart = i + 1;
  }
  return buf.length;
}

/** Splits a header block (or a whole message, whose body is ignored) into fields. */
export function parseHeaderBlock(input: Buffer | string): HeaderField[] {
  const buf = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  // latin1 maps every byte to one character, so values can be re-read in their real charset
  const text = buf.subarray(0, headerEnd(buf)).toString('latin1');
  const lines = text.split(/\r?\n/);
  const fields: HeaderField[] = [];
  let current: { name: string; parts: string[] } | null = null;
  const flush = () => {
    if (!current) return;
    const decoded = decodeValue(current.parts.join('').replace(/^[ \t]+/, '').replace(/[ \t]+$/, ''));
    fields.push({ name: current.name, key: current.name.toLowerCase(), ...decoded });
    current = null;
  };
  for (const line of lines) {
    if (line === '') continue; // the terminating empty line (or a trailing newline)
    if (/^[ \t]/.test(line)) {
      // continuation (folding), including whitespace-only lines
      if (current) current.parts.push(line);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0 || !/^[\x21-\x39\x3b-\x7e]+$/.test(line.slice(0, colon).trimEnd())) {
      // not a field (an mbox "From " line, garbage): keep it out rather than guess
      continue;
    }
    flush();
    current = { name: line.slice(0, colon).trimEnd(), parts: [line.slice(colon + 1)] };
  }
  flush();
  return fields;
}

/** All values of a header, in order. */
export function headerValues(fields: HeaderField[], name: string): string[] {
  const key = name.toLowerCase();
  return fields.filter((f) => f.key === key).map((f) => f.value);
}

export function firstHeader(fields: HeaderField[], name: string): string | null {
  const key = name.toLowerCase();
  return fields.find((f) => f.key === key)?.value ?? null;
}

const ENCODED_WORD = /=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=/g;

function decodeWordBytes(enc: string, text: string): Buffer {
  if (enc.toUpperCase() === 'B') {
    return Buffer.from(text.replace(/[^A-Za-z0-9+/]/g, ''), 'base64');
  }
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '_') bytes.push(0x20);
    else if (c === '=' && /^[0-9A-Fa-f]{2}$/.test(text.slice(i + 1, i + 3))) {
      bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(c.charCodeAt(0) & 0xff);
  }
  return Buffer.from(bytes);
}

function decodeCharset(charset: string, bytes: Buffer): string {
  const label = charset.replace(/\*.*$/, '').trim().toLowerCase(); // RFC 2231 language suffix
  try {
    return new TextDecoder(label === 'utf8' ? 'utf-8' : label).decode(bytes);
  } catch {
    return bytes.toString('latin1');
  }
}

/**
 * Decodes RFC 2047 encoded-words. Adjacent words of the same charset (only whitespace between)
 * are joined at the byte level before decoding, because senders split them in the middle of a
 * UTF-8 sequence (B13) and Gmail and Exchange show such mail correctly.
 */
export function decodeEncodedWords(value: string): string {
  if (!value.includes('=?')) return value;
  type Piece = { text: string } | { charset: string; bytes: Buffer };
  const pieces: Piece[] = [];
  let last = 0;
  for (const m of value.matchAll(ENCODED_WORD)) {
    const between = value.slice(last, m.index);
    const prev = pieces[pieces.length - 1];
    const charset = m[1]!.toLowerCase();
    const bytes = decodeWordBytes(m[2]!, m[3]!);
    if (prev && 'bytes' in prev && /^\s*$/.test(between)) {
      // whitespace between two encoded-words is not part of the text (RFC 2047 §6.2)
      if (prev.charset === charset) prev.bytes = Buffer.concat([prev.bytes, bytes]);
      else pieces.push({ charset, bytes });
    } else {
      if (between) pieces.push({ text: between });
      pieces.push({ charset, bytes });
    }
    last = (m.index ?? 0) + m[0].length;
  }
  if (last < value.length) pieces.push({ text: value.slice(last) });
  return pieces.map((p) => ('text' in p ? p.text : decodeCharset(p.charset, p.bytes))).join('');
}

/**
 * Reads bytes of an unknown legacy charset: the charsets the message declares are tried first
 * (a QQ mail subject in raw GBK comes with a GBK body), windows-1252 last (it accepts anything).
 */
export function decodeLegacyBytes(bytes: Buffer, declaredCharsets: string[]): string {
  for (const cs of declaredCharsets) {
    try {
      return new TextDecoder(cs.toLowerCase(), { fatal: true }).decode(bytes);
    } catch {
      // unknown label or not this charset: next
    }
  }
  return new TextDecoder('windows-1252').decode(bytes);
}
