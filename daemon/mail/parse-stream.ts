import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { MailParser, type AttachmentStream, type MessageText } from 'mailparser';
import { decodeEncodedWords, headerEnd, parseHeaderBlock, type HeaderField } from '../threads/headers.js';
import { extractIdHeaders } from '../threads/message-ids.js';
import { detectAutoReply } from '../threads/auto-reply.js';
import { makeSnippet } from '../shapes.js';
import { headerSummary, type ParsedAttachment, type ParsedMessage, type ParseOptions } from './parse.js';

/**
 * Parsing for messages too large to keep (above store.maxRawBytes): the source is read as a
 * stream and each attachment is counted as it passes and dropped, so memory stays bounded
 * whatever the attachments weigh (B25: a 1.4 GB video must not be held in memory). Text and
 * HTML are kept up to `maxTextBytes`. Never throws: a stream that fails or takes too long
 * gives a message with its header fields and the reason.
 */

/** The header block is read up to this size; longer ones are cut (they are not real mail). */
const MAX_HEADER_BYTES = 256 * 1024;

export async function parseMessageStream(source: Readable, opts: ParseOptions & { maxTextBytes: number }): Promise<ParsedMessage> {
  let head = Buffer.alloc(0);
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      size += chunk.length;
      if (head.length < MAX_HEADER_BYTES && headerEnd(head) >= head.length) head = Buffer.concat([head, chunk]).subarray(0, MAX_HEADER_BYTES);
      done(null, chunk);
    },
  });
  const parser = new MailParser({ skipImageLinks: true, skipTextToHtml: true, maxHtmlLengthToParse: opts.maxTextBytes });
  const attachments: ParsedAttachment[] = [];
  let text = '';
  let html: string | null = null;
  parser.on('data', (data: AttachmentStream | MessageText) => {
    if (data.type === 'text') {
      text = (data.text ?? '').replace(/\r\n/g, '\n').slice(0, opts.maxTextBytes);
      html = typeof data.html === 'string' ? data.html.slice(0, opts.maxTextBytes) : null;
      return;
    }
    const index = attachments.length;
    const meta: ParsedAttachment = {
      id: `a_${index}`, filename: data.filename ? decodeEncodedWords(data.filename) : null,
      contentType: (data.contentType || 'application/octet-stream').toLowerCase(), size: 0, index,
    };
    attachments.push(meta);
    data.content.on('data', (c: Buffer) => {
      meta.size += c.length;
    });
    data.content.on('end', () => data.release?.());
    data.content.resume();
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`parsing took longer than ${opts.timeoutMs} ms`)), opts.timeoutMs);
    timer.unref();
  });
  let parseError: string | null = null;
  try {
    await Promise.race([pipeline(source, tap, parser), timeout]);
  } catch (err) {
    parseError = (err as Error).message;
    source.destroy();
    parser.destroy();
  } finally {
    clearTimeout(timer);
  }
  const headers: HeaderField[] = parseHeaderBlock(head);
  const summary = headerSummary(headers, opts.fallbackDate);
  return {
    headers, ids: extractIdHeaders(headers), ...summary, text, html, snippet: makeSnippet(text),
    attachments, autoReply: detectAutoReply(headers, summary.subject).autoReply, size, parseError,
  };
}
