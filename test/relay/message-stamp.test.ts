import crypto from 'node:crypto';
import t from 'tap';
import fc from 'fast-check';
import { MessageIdStamper, prepareSubmission, SubmissionError } from '../../daemon/mail/message-stamp.js';
import { isAtsDomainId } from '../../daemon/threads/matching.js';
import { parseHeaderBlock } from '../../daemon/threads/headers.js';

/** What the relay changes in a submitted message: its instructions out, one Message-ID in, nothing else. */

const stamper = new MessageIdStamper(crypto.randomBytes(32));
const opts = { isAtsId: (id: string) => isAtsDomainId(id, ['ats.example.net']), newMessageId: () => stamper.create('ats.example.net'), now: new Date('2026-09-01T10:00:00Z') };

const msg = (headers: string[], body = 'Hello.\r\n') => Buffer.from(`${headers.join('\r\n')}\r\n\r\n${body}`, 'utf8');

t.test('instructions are read and removed, folded ones too; everything else is kept byte for byte', async (t) => {
  const body = 'Grüße aus Köln\r\n.\r\n..leading dots stay\r\n';
  const raw = msg([
    'From: Robin <robin@example.com>',
    'X-Mailsync-User: u1',
    'To: casey@example.org',
    'X-Mailsync-Candidate: c1,',
    ' c2 , c1',
    'x-mailsync-candidate: c3',
    'X-MAILSYNC-Future-Option: yes',
    'Subject: =?UTF-8?B?R3LDvMOfZQ==?=',
    'Date: Tue, 01 Sep 2026 09:00:00 +0200',
  ], body);
  const p = prepareSubmission(raw, opts);
  t.equal(p.userId, 'u1');
  t.same(p.candidateIds, ['c1', 'c2', 'c3'], 'comma lists, folding, repeats and header case');
  const text = p.raw.toString('utf8');
  t.notMatch(text, /x-mailsync/i, 'no instruction header is left');
  t.ok(p.raw.subarray(p.raw.length - Buffer.byteLength(body)).equals(Buffer.from(body, 'utf8')), 'the body is untouched');
  t.match(text, /^From: Robin <robin@example.com>\r\nTo: casey@example.org\r\nSubject: =\?UTF-8\?B\?R3LDvMOfZQ==\?=\r\nDate: Tue, 01 Sep 2026 09:00:00 \+0200\r\n\r\n/m, 'other headers in order, CRLF kept');
  t.equal(text.match(/^Message-ID:/gm)?.length, 1);
  t.ok(stamper.verify(p.messageId.slice(1, -1)), 'a stamped id verifies');
});

t.test('Message-ID: kept in an ATS domain, replaced otherwise, one only; Date added when missing', async (t) => {
  const kept = prepareSubmission(msg(['Message-ID: <a.1@mail.ats.example.net>', 'Date: Tue, 01 Sep 2026 09:00:00 +0000']), opts);
  t.equal(kept.messageId, '<a.1@mail.ats.example.net>');
  t.same(kept.replacedIds, []);
  t.notMatch(kept.raw.toString(), /^Date: .*\r\nDate:/m);

  const replaced = prepareSubmission(msg(['Message-ID: <local.9@ats-host.internal>', 'Subject: x']), opts);
  t.match(replaced.messageId, /^<[0-9a-z]+\.[0-9a-f]{12}@ats\.example\.net>$/);
  t.same(replaced.replacedIds, ['<local.9@ats-host.internal>'], 'the replaced id is remembered (the ATS may refer to it)');
  t.match(replaced.raw.toString(), /^Date: Tue, 01 Sep 2026 10:00:00 \+0000$/m, 'a Date is added');

  const two = prepareSubmission(msg(['Message-ID: <x@elsewhere.example.com>', 'Message-Id: <y.2@ats.example.net>']), opts);
  t.equal(two.messageId, '<y.2@ats.example.net>', 'of two ids the one in the ATS domain wins');
  t.same(two.replacedIds, ['<x@elsewhere.example.com>']);
  t.equal(two.raw.toString().match(/^message-id:/gim)?.length, 1, 'providers refuse two Message-IDs: one is sent');

  const lf = prepareSubmission(Buffer.from('Subject: bare LF\n\nbody\n'), opts);
  t.notMatch(lf.raw.toString(), /\r/, 'LF-only input stays LF-only');
  const headersOnly = prepareSubmission(Buffer.from('Subject: no body\r\n'), opts);
  t.match(headersOnly.raw.toString(), /\r\n\r\n$/, 'a message without a body still ends its header block');
});

t.test('malformed instructions are refused with a reason, never guessed', async (t) => {
  const bad = (h: string) => {
    try {
      prepareSubmission(msg([h]), opts);
    } catch (err) {
      return err as SubmissionError;
    }
    return null;
  };
  const e1 = bad('X-Mailsync-User: robin@example.com');
  t.ok(e1 instanceof SubmissionError && e1.responseCode === 550 && /not a user id/.test(e1.message));
  const e2 = bad('X-Mailsync-Candidate: c1; c2');
  t.ok(e2 instanceof SubmissionError && /not a candidate id/.test(e2.message));
  const e3 = bad(`X-Mailsync-Candidate: ${'c'.repeat(129)}`);
  t.ok(e3 instanceof SubmissionError, 'ids longer than 128 characters are refused');
});

t.test('stamps: made by this key only, not forgeable by changing a character', async (t) => {
  const id = stamper.create('ats.example.net').slice(1, -1);
  t.ok(stamper.verify(id));
  const other = new MessageIdStamper(crypto.randomBytes(32));
  t.notOk(other.verify(id), 'another installation\'s key does not verify it');
  const [random, rest] = id.split('.');
  const flipped = `${random!.slice(0, -1)}${random!.endsWith('0') ? '1' : '0'}.${rest}`;
  t.notOk(stamper.verify(flipped), 'a changed random part fails');
  t.notOk(stamper.verify('abc.def@ats.example.net'));
  const ids = new Set(Array.from({ length: 2000 }, () => stamper.create('ats.example.net')));
  t.equal(ids.size, 2000, 'no two stamps alike');
});

t.test('property: whatever headers come in, one Message-ID and no instruction goes out, and the body is intact', async (t) => {
  const name = fc.constantFrom('X-Mailsync-User', 'x-mailsync-candidate', 'X-Mailsync-Other', 'Message-ID', 'Subject', 'To', 'Received', 'X-Custom');
  const value = fc.stringMatching(/^[A-Za-z0-9 .,<>@_:-]{0,40}$/);
  const field = fc.tuple(name, value, fc.boolean()).map(([n, v, fold]) => {
    if (n === 'Message-ID') return `${n}: <${v.replace(/[^a-z0-9.]/gi, '') || 'id'}@example.com>`;
    if (/mailsync-user/i.test(n)) return `${n}: u1`;
    if (/mailsync-candidate/i.test(n)) return `${n}: c1,${fold ? '\r\n ' : ' '}c2`;
    return fold ? `${n}: ${v}\r\n\t${v}` : `${n}: ${v}`;
  });
  t.doesNotThrow(() => fc.assert(fc.property(fc.array(field, { maxLength: 12 }), fc.uint8Array({ maxLength: 200 }), (fields, bodyBytes) => {
    const body = Buffer.from(bodyBytes);
    const raw = Buffer.concat([Buffer.from(`${fields.join('\r\n')}${fields.length ? '\r\n' : ''}\r\n`, 'latin1'), body]);
    const p = prepareSubmission(raw, opts);
    const headers = parseHeaderBlock(p.raw);
    return headers.filter((h) => h.key === 'message-id').length === 1
      && !headers.some((h) => h.key.startsWith('x-mailsync-'))
      && p.raw.subarray(p.raw.length - body.length).equals(body);
  }), { numRuns: 300 }), 'held for generated messages');
});
