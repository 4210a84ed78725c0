import t from 'tap';
import fc from 'fast-check';
import { parseMessage } from '../../daemon/mail/parse.js';
import { parseHeaderBlock, decodeEncodedWords } from '../../daemon/threads/headers.js';
import { extractIdHeaders } from '../../daemon/threads/message-ids.js';
import { parseAddressList } from '../../daemon/threads/addresses.js';

/**
 * Whatever arrives, the parser answers: generated header blocks (folding, encoded-words,
 * 8-bit bytes, broken syntax) and generated MIME trees (nested multiparts with missing or
 * wrong boundaries, odd transfer encodings and charsets, embedded messages, binary junk)
 * never make it throw or reject, and what it returns has the stored shape.
 */

const ID_HEADERS = ['Message-ID', 'Message-Id', 'In-Reply-To', 'References', 'X-Google-Original-Message-ID', 'Thread-Index'];
const ADDRESS_HEADERS = ['From', 'To', 'Cc', 'Reply-To'];
const OTHER_HEADERS = ['Subject', 'Date', 'Content-Type', 'Content-Transfer-Encoding', 'MIME-Version', 'Auto-Submitted', 'X-Whatever'];

/** Pieces real header values are made of, glued together at random. */
const valuePiece = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.constantFrom('<', '>', '@', ',', ';', '"', '(', ')', '\\', '=?', '?=', '=?utf-8?B?', '=?utf-8?Q?', '=?gbk?B?', '=?x-unknown?Q?', ' ', '\t', '\r\n ', '\n\t', '\r\n\r\n'),
  fc.tuple(fc.stringMatching(/^[a-z0-9.-]{1,10}$/), fc.stringMatching(/^[a-z0-9.-]{1,10}$/)).map(([l, d]) => `<${l}@${d}>`),
  fc.tuple(fc.stringMatching(/^[a-z0-9.+-]{1,10}$/), fc.stringMatching(/^[a-z0-9.-]{1,10}$/)).map(([l, d]) => `${l}@${d}`),
  fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.from(b).toString('latin1')),
  fc.uint8Array({ maxLength: 12 }).map((b) => `=?utf-8?B?${Buffer.from(b).toString('base64')}?=`),
);
const headerValue = fc.array(valuePiece, { maxLength: 8 }).map((parts) => parts.join(''));
const headerName = fc.oneof(fc.constantFrom(...ID_HEADERS, ...ADDRESS_HEADERS, ...OTHER_HEADERS), fc.stringMatching(/^[!-9;-~]{1,12}$/));
const headerLine = fc.oneof(
  fc.tuple(headerName, headerValue).map(([n, v]) => `${n}: ${v}`),
  headerValue, // a line without a colon
  fc.constantFrom(' ', '\t', ' continued', ':', ': no name'),
);
const headerBlock = fc.tuple(fc.array(headerLine, { maxLength: 15 }), fc.constantFrom('\r\n', '\n')).map(([lines, eol]) => lines.join(eol));

t.test('header fields: parsing, ids, addresses and encoded-words never throw', async (t) => {
  fc.assert(
    fc.property(headerBlock, (block) => {
      const buf = Buffer.from(block, 'latin1');
      const fields = parseHeaderBlock(buf);
      const ids = extractIdHeaders(fields);
      for (const id of [ids.messageId, ids.inReplyTo, ...ids.references, ...ids.messageIdAlternatives, ...ids.aliases]) {
        if (id !== null && !/^<[^<>\s]+>$/.test(id)) return false;
      }
      for (const f of fields) {
        decodeEncodedWords(f.value);
        if (ADDRESS_HEADERS.map((h) => h.toLowerCase()).includes(f.key) && parseAddressList(f.value).some((a) => !a.address.includes('@'))) return false;
      }
      return true;
    }),
    { numRuns: 1_000 },
  );
  t.pass('1,000 generated header blocks');
});

interface Part {
  headers: string[];
  body: string;
}

const charset = fc.constantFrom('utf-8', 'us-ascii', 'iso-8859-1', 'gbk', 'iso-2022-jp', 'utf-7', 'x-unknown', 'u\x00d', '');
const cte = fc.constantFrom('7bit', '8bit', 'base64', 'quoted-printable', 'BASE64  ', 'binary', 'x-uuencode', 'bogus', '');
const leafType = fc.constantFrom('text/plain', 'text/html', 'application/pdf', 'application/ms-tnef', 'text/calendar', 'image/png', 'application/octet-stream', 'text/p', '');
const leafBody = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('latin1')),
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('base64').replace(/.{76}/g, '$&\r\n')),
  fc.constantFrom('=0D=0A\r\n=\r\nsoft =  \r\n', '<html><meta charset="iso-8859-1"><p>J\xf8rgen</p></html>', ''),
);

/** A MIME tree: leaves, multiparts (closing boundary sometimes missing or wrong), and embedded messages. */
const { tree } = fc.letrec<{ tree: Part }>((tie) => ({
  tree: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ type: leafType, cs: charset, enc: cte, name: fc.option(headerValue), body: leafBody, disp: fc.constantFrom('', 'inline', 'attachment') }).map((p) => ({
      headers: [
        `Content-Type: ${p.type}${p.cs ? `; charset=${p.cs}` : ''}${p.name !== null ? `; name="${p.name}"` : ''}`,
        ...(p.enc ? [`Content-Transfer-Encoding: ${p.enc}`] : []),
        ...(p.disp ? [`Content-Disposition: ${p.disp}${p.name !== null ? `; filename=${p.name}` : ''}`] : []),
      ],
      body: p.body,
    })),
    fc.record({
      sub: fc.constantFrom('mixed', 'alternative', 'related', 'report', 'signed', 'digest'),
      boundary: fc.stringMatching(/^[A-Za-z0-9'()+_,./:=? -]{1,30}$/),
      parts: fc.array(tie('tree'), { maxLength: 4 }),
      close: fc.constantFrom('proper', 'missing', 'wrong'),
      preamble: fc.string({ maxLength: 20 }),
    }).map((m) => ({
      headers: [`Content-Type: multipart/${m.sub}; boundary="${m.boundary}"`],
      body: `${m.preamble}\r\n${m.parts.map((p) => `--${m.boundary}\r\n${p.headers.join('\r\n')}\r\n\r\n${p.body}\r\n`).join('')}${m.close === 'proper' ? `--${m.boundary}--\r\n` : m.close === 'wrong' ? `--${m.boundary}X--\r\n` : ''}`,
    })),
    fc.record({ inner: tie('tree'), top: headerBlock }).map((m) => ({
      headers: ['Content-Type: message/rfc822'],
      body: `${m.top}\r\n${m.inner.headers.join('\r\n')}\r\n\r\n${m.inner.body}`,
    })),
  ),
}));

t.test('generated MIME trees: parsing always resolves with the stored shape', async (t) => {
  await fc.assert(
    fc.asyncProperty(headerBlock, tree, fc.constantFrom('\r\n', '\n'), async (top, root, eol) => {
      const raw = Buffer.from(`${top}${eol}${root.headers.join(eol)}${eol}${eol}${root.body}`.replace(/\r?\n/g, eol), 'latin1');
      const p = await parseMessage(raw, { timeoutMs: 5_000, fallbackDate: new Date(0) });
      return (
        typeof p.text === 'string' &&
        (p.html === null || typeof p.html === 'string') &&
        Number.isFinite(Date.parse(p.date)) &&
        p.attachments.every((a, i) => a.size >= 0 && a.id === `a_${i}`) &&
        (p.parseError === null || typeof p.parseError === 'string') &&
        p.snippet.length <= 200 &&
        p.size === raw.length
      );
    }),
    { numRuns: 300 },
  );
  t.pass('300 generated messages');
});

t.test('arbitrary bytes are a message too', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 2_000 }), async (bytes) => {
      const p = await parseMessage(Buffer.from(bytes), { timeoutMs: 5_000 });
      return typeof p.text === 'string' && Array.isArray(p.attachments);
    }),
    { numRuns: 300 },
  );
  t.pass('300 random byte strings');
});
