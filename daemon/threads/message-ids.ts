import { decodeEncodedWords, headerValues, firstHeader, type HeaderField } from './headers.js';

/**
 * Message-ID parsing and normalisation (RFC 5322 §3.6.4, with what real mail does).
 * Ids are returned as written, in angle brackets; `normaliseId` gives the form used as an
 * index key, so ids compare bracket-insensitively (B01) and FWS inside an id is ignored (B47).
 */

export interface IdHeaders {
  /** The first Message-ID field's id, "<...>", or null when absent (B02). */
  messageId: string | null;
  /** Ids of further Message-ID fields (B04): indexed for reply matching too. */
  messageIdAlternatives: string[];
  /** Ids this message had before a provider rewrote it (B11): indexed too. */
  aliases: string[];
  inReplyTo: string | null;
  references: string[];
  /** Ids that point at the parent without being In-Reply-To (Exchange), matching evidence only. */
  parentHints: string[];
  /** Hex of the first 22 bytes of Outlook's Thread-Index (the conversation root), B09. */
  threadIndexRoot: string | null;
}

/** Headers naming the id the message had before a relay replaced it. */
const ALIAS_HEADERS = ['x-google-original-message-id', 'x-original-message-id'];
/** Headers naming the parent message, used only as matching evidence. */
const PARENT_HINT_HEADERS = ['x-ms-exchange-parent-message-id'];

/** Strips RFC 5322 comments (nested, with quoted-pairs) outside angle brackets. */
function stripComments(value: string): string {
  let out = '';
  let depth = 0;
  let inAngle = false;
  let inQuote = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (depth > 0) {
      if (c === '\\') i++;
      else if (c === '(') depth++;
      else if (c === ')') depth--;
      continue;
    }
    if (inQuote) {
      out += c;
      if (c === '\\' && i + 1 < value.length) out += value[++i];
      else if (c === '"') inQuote = false;
      continue;
    }
    if (c === '"') inQuote = true;
    else if (c === '<') inAngle = true;
    else if (c === '>') inAngle = false;
    else if (c === '(' && !inAngle) {
      depth = 1;
      out += ' ';
      continue;
    }
    out += c;
  }
  return out;
}

/**
 * Every msg-id of a field value, in order: encoded-words decoded first (B07), comments and
 * commas ignored (B05, B47), whitespace inside an id removed. A value with no angle brackets
 * at all yields its bare `left@right` tokens, bracketed (B01).
 */
export function parseIdList(value: string | null | undefined): string[] {
  if (!value) return [];
  const decoded = decodeEncodedWords(value);
  // without a '(' there is no comment to strip (most values: a quick path for big folders)
  const cleaned = decoded.includes('(') ? stripComments(decoded) : decoded;
  const ids: string[] = [];
  const re = /<([^<>]*)>/g;
  for (const m of cleaned.matchAll(re)) {
    const inner = m[1]!.replace(/\s+/g, '');
    if (inner.length > 0 && inner.length <= 998) ids.push(`<${inner}>`);
  }
  if (ids.length === 0 && !cleaned.includes('<')) {
    for (const token of cleaned.split(/[\s,;]+/)) {
      if (/^[^\s@<>()]+@[^\s@<>()]+$/.test(token)) ids.push(`<${token}>`);
    }
  }
  return ids;
}

/** The first id of a field that should hold one (Message-ID, In-Reply-To). */
export function parseSingleId(value: string | null | undefined): string | null {
  return parseIdList(value)[0] ?? null;
}

/**
 * The index key of an id: no brackets, no whitespace, domain lower-cased (domains are
 * case-insensitive; the local part is compared as written, as every MTA does).
 */
export function normaliseId(id: string): string {
  const bare = id.replace(/^\s*<|>\s*$/g, '').replace(/\s+/g, '');
  const at = bare.lastIndexOf('@');
  return at < 0 ? bare : bare.slice(0, at) + '@' + bare.slice(at + 1).toLowerCase();
}

/** The domain (id-right) of an id, lower-case, or null. */
export function idDomain(id: string): string | null {
  const bare = normaliseId(id);
  const at = bare.lastIndexOf('@');
  return at < 0 ? null : bare.slice(at + 1).replace(/^\[|\]$/g, '');
}

function threadIndexRoot(value: string | null): string | null {
  if (!value) return null;
  const bytes = Buffer.from(value.replace(/\s+/g, ''), 'base64');
  // 22 bytes: 6 of FILETIME and 16 of GUID identify the conversation; replies append 5-byte blocks
  return bytes.length >= 22 ? bytes.subarray(0, 22).toString('hex') : null;
}

export function extractIdHeaders(fields: HeaderField[]): IdHeaders {
  const messageIdFields = headerValues(fields, 'message-id');
  const idsPerField = messageIdFields.map((v) => parseSingleId(v)).filter((v): v is string => v !== null);
  const messageId = idsPerField[0] ?? null;
  const seen = new Set(messageId ? [normaliseId(messageId)] : []);
  const uniq = (ids: string[]): string[] =>
    ids.filter((id) => {
      const n = normaliseId(id);
      if (seen.has(n)) return false;
      seen.add(n);
      return true;
    });
  const messageIdAlternatives = uniq(idsPerField.slice(1));
  const aliases = uniq(ALIAS_HEADERS.flatMap((h) => headerValues(fields, h).flatMap(parseIdList)));
  const references: string[] = [];
  const refSeen = new Set<string>();
  for (const id of headerValues(fields, 'references').flatMap(parseIdList)) {
    const n = normaliseId(id);
    if (!refSeen.has(n)) {
      refSeen.add(n);
      references.push(id);
    }
  }
  return {
    messageId,
    messageIdAlternatives,
    aliases,
    inReplyTo: parseSingleId(firstHeader(fields, 'in-reply-to')),
    references,
    parentHints: PARENT_HINT_HEADERS.flatMap((h) => headerValues(fields, h).flatMap(parseIdList)),
    threadIndexRoot: threadIndexRoot(firstHeader(fields, 'thread-index')),
  };
}

/** The ids that name this message itself. */
export function ownIds(h: IdHeaders): string[] {
  return [...(h.messageId ? [h.messageId] : []), ...h.messageIdAlternatives, ...h.aliases];
}

/** The ids this message points at (its ancestors). */
export function relatedIds(h: IdHeaders): string[] {
  return [...(h.inReplyTo ? [h.inReplyTo] : []), ...h.references, ...h.parentHints];
}

/** Own and related ids, normalised and de-duplicated. */
export function allNormalisedIds(h: IdHeaders): string[] {
  return [...new Set([...ownIds(h), ...relatedIds(h)].map(normaliseId))];
}

/** Header fields the sync fetches before deciding whether a message is tracked. */
export const ID_HEADER_NAMES = [
  'message-id', 'in-reply-to', 'references', 'date', 'subject', 'from', 'to', 'cc',
  'thread-index', 'auto-submitted', ...ALIAS_HEADERS, ...PARENT_HINT_HEADERS,
];
