import { simpleParser, type Attachment } from 'mailparser';
import { parseAddressList, type Address } from '../threads/addresses.js';
import { decodeEncodedWords, decodeLegacyBytes, firstHeader, parseHeaderBlock, type HeaderField } from '../threads/headers.js';
import { repairForParsing } from './repair.js';
import { extractIdHeaders, type IdHeaders } from '../threads/message-ids.js';
import { detectAutoReply } from '../threads/auto-reply.js';
import { makeSnippet } from '../shapes.js';

/**
 * MIME parsing into the stored message shape. Ids and addresses come from our own header
 * parser (mailparser mangles some, see threads/); mailparser does MIME, charsets and
 * transfer encodings. Parsing never throws: a message mailparser cannot read, or reads too
 * slowly (B23: unterminated multiparts used to hang it), is kept with its headers, its raw
 * bytes and the reason.
 */

export interface ParsedAttachment {
  id: string;
  filename: string | null;
  contentType: string;
  size: number;
  index: number;
}

export interface ParsedMessage {
  headers: HeaderField[];
  ids: IdHeaders;
  subject: string;
  from: Address | null;
  to: Address[];
  cc: Address[];
  date: string;
  text: string;
  html: string | null;
  snippet: string;
  attachments: ParsedAttachment[];
  autoReply: boolean;
  size: number;
  parseError: string | null;
}

export interface ParseOptions {
  timeoutMs: number;
  /** Used when the Date header is missing or unreadable (IMAP INTERNALDATE). */
  fallbackDate?: Date;
}

/** Header values as text: RFC 2047 decoded; 8-bit bytes read as UTF-8 (RFC 6532). */
export function headerSummary(headers: HeaderField[], fallbackDate?: Date, declaredCharsets: string[] = []): Pick<ParsedMessage, 'subject' | 'from' | 'to' | 'cc' | 'date'> {
  const dateRaw = firstHeader(headers, 'date');
  const parsedDate = dateRaw ? new Date(dateRaw.replace(/\s*\([^)]*\)\s*$/, '')) : null;
  const date = parsedDate && Number.isFinite(parsedDate.getTime()) ? parsedDate : (fallbackDate ?? new Date(0));
  return {
    subject: decodeEncodedWords(subjectText(headers, declaredCharsets)).replace(/\s+/g, ' ').trim(),
    from: parseAddressList(firstHeader(headers, 'from'))[0] ?? null,
    to: parseAddressList(headers.filter((h) => h.key === 'to').map((h) => h.value).join(', ')),
    cc: parseAddressList(headers.filter((h) => h.key === 'cc').map((h) => h.value).join(', ')),
    date: date.toISOString(),
  };
}

function subjectText(headers: HeaderField[], declaredCharsets: string[]): string {
  const field = headers.find((h) => h.key === 'subject');
  if (!field) return '';
  return field.bytes ? decodeLegacyBytes(field.bytes, declaredCharsets) : field.value;
}

/** Charsets a message declares anywhere (`charset=` parameters), most frequent first. */
function declaredCharsets(raw: Buffer): string[] {
  const counts = new Map<string, number>();
  for (const m of raw.toString('latin1').matchAll(/charset\s*=\s*"?([A-Za-z0-9_.:-]+)/gi)) {
    const cs = m[1]!.toLowerCase();
    if (cs !== 'us-ascii' && cs !== 'utf-8' && cs !== 'utf8') counts.set(cs, (counts.get(cs) ?? 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([cs]) => cs);
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`parsing took longer than ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function attachmentMeta(a: Attachment, index: number): ParsedAttachment {
  return {
    id: `a_${index}`,
    filename: a.filename ? decodeEncodedWords(a.filename) : null,
    contentType: (a.contentType || 'application/octet-stream').toLowerCase(),
    size: a.content?.length ?? a.size ?? 0,
    index,
  };
}

export async function parseMessage(raw: Buffer, opts: ParseOptions): Promise<ParsedMessage> {
  const headers = parseHeaderBlock(raw);
  const ids = extractIdHeaders(headers);
  const summary = headerSummary(headers, opts.fallbackDate, headers.some((h) => h.bytes) ? declaredCharsets(raw) : []);
  const base = { headers, ids, ...summary, autoReply: detectAutoReply(headers, summary.subject).autoReply, size: raw.length };
  try {
    const mail = await withTimeout(simpleParser(repairForParsing(raw), { skipImageLinks: true, skipTextToHtml: true, maxHtmlLengthToParse: 5_000_000 }), opts.timeoutMs);
    const text = (mail.text ?? '').replace(/\r\n/g, '\n');
    const html = typeof mail.html === 'string' ? mail.html : null;
    const attachments = (mail.attachments ?? []).map(attachmentMeta);
    // mailparser reads RFC 2047 splits and 8-bit headers better in some cases and worse in
    // others (B13, B15): prefer its subject only when ours has replacement characters.
    const subject = summary.subject.includes('\uFFFD') && mail.subject ? mail.subject : summary.subject;
    return { ...base, subject, text, html, snippet: makeSnippet(text || htmlToText(html ?? '')), attachments, parseError: null };
  } catch (err) {
    const body = raw.subarray(Math.min(raw.length, raw.indexOf('\n\n') >= 0 ? raw.indexOf('\n\n') + 2 : raw.length)).toString('utf8');
    return { ...base, text: body, html: null, snippet: makeSnippet(body), attachments: [], parseError: (err as Error).message };
  }
}

/** The bytes of one attachment, found again by its position among the attachments. */
export async function extractAttachment(raw: Buffer, index: number, timeoutMs: number): Promise<{ content: Buffer; contentType: string; filename: string | null } | null> {
  const mail = await withTimeout(simpleParser(repairForParsing(raw), { skipImageLinks: true, skipTextToHtml: true }), timeoutMs);
  const a = mail.attachments?.[index];
  if (!a) return null;
  return { content: a.content, contentType: a.contentType || 'application/octet-stream', filename: a.filename ? decodeEncodedWords(a.filename) : null };
}

function htmlToText(html: string): string {
  return html.replace(/<(script|style)[\s\S]*?<\/\1>/gi, ' ').replace(/<[^>]+>/g, ' ').replace(/&nbsp;/g, ' ').replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>');
}

