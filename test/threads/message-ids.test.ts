import t from 'tap';
import { parseMessage } from '../../daemon/mail/parse.js';
import { normaliseId, parseIdList } from '../../daemon/threads/message-ids.js';
import { isAtsDomainId } from '../../daemon/threads/matching.js';
import { normaliseAddress } from '../../daemon/threads/addresses.js';
import { detectAutoReply } from '../../daemon/threads/auto-reply.js';
import { parseHeaderBlock } from '../../daemon/threads/headers.js';
import { CASES, crlf } from '../fixtures/cases.js';

for (const c of CASES) {
  t.test(`${c.shape}: ${c.name}`, async (t) => {
    const p = await parseMessage(Buffer.from(c.raw), { timeoutMs: 5_000 });
    const e = c.expect;
    t.equal(p.parseError, null, 'parsed without error');
    if (e.messageId !== undefined) t.equal(p.ids.messageId, e.messageId, 'Message-ID');
    if (e.messageIdAlternatives) t.same(p.ids.messageIdAlternatives, e.messageIdAlternatives, 'other Message-ID fields kept for matching');
    if (e.aliases) t.same(p.ids.aliases, e.aliases, 'ids from before a provider rewrite kept for matching');
    if (e.inReplyTo !== undefined) t.equal(p.ids.inReplyTo, e.inReplyTo, 'In-Reply-To');
    if (e.references) t.same(p.ids.references, e.references, 'References, in order, always an array');
    if (e.threadIndexRoot) t.equal(p.ids.threadIndexRoot, e.threadIndexRoot, 'Thread-Index root');
    if (e.from) t.same(p.from, e.from, 'From');
    if (e.to) t.same(p.to, e.to, 'To');
    if (e.subject) t.equal(p.subject, e.subject, 'Subject');
    if (e.text !== undefined) t.equal(p.text.trimEnd(), e.text, 'text');
    for (const s of e.textContains ?? []) t.ok(p.text.includes(s), `text contains ${s}`);
    for (const s of e.htmlContains ?? []) t.ok((p.html ?? '').includes(s), `html contains ${s}`);
    if (e.attachments) {
      t.equal(p.attachments.length, e.attachments.length, 'attachment count');
      e.attachments.forEach((a, i) => {
        const got = p.attachments[i]!;
        t.equal(got.contentType, a.contentType, `attachment ${i} type`);
        if (a.filename !== undefined) t.equal(got.filename, a.filename, `attachment ${i} name`);
        if (a.size !== undefined) t.equal(got.size, a.size, `attachment ${i} decoded size`);
      });
    }
  });
}

t.test('a message with no body and no blank line is a valid message (B26)', async (t) => {
  const p = await parseMessage(Buffer.from(crlf('From: a@example.com', 'Subject: (no body)', 'Message-ID: <nb@example.com>')), { timeoutMs: 5_000 });
  t.equal(p.ids.messageId, '<nb@example.com>');
  t.equal(p.subject, '(no body)');
  t.equal(p.text, '');
});

t.test('a multipart without its closing boundary ends at EOF with every part (B23)', async (t) => {
  const body = Buffer.from('%PDF-1.4 offer').toString('base64');
  const raw = crlf('From: hr@example.com', 'Message-ID: <open-23@example.com>', 'Content-Type: multipart/mixed; boundary="b"', '', '--b', 'Content-Type: text/plain', '', 'Offer attached.', '--b',
    'Content-Type: application/pdf; name="offer.pdf"', 'Content-Disposition: attachment; filename="offer.pdf"', 'Content-Transfer-Encoding: base64', '', body, '');
  const p = await parseMessage(Buffer.from(raw), { timeoutMs: 5_000 });
  t.equal(p.text.trim(), 'Offer attached.');
  t.same(p.attachments.map((a) => [a.filename, a.size]), [['offer.pdf', 14]]);
});

t.test('a raw 8-bit subject in a legacy charset is read with the charset the message declares (B15)', async (t) => {
  const subject = Buffer.from([0xc3, 0xe6, 0xca, 0xd4]); // "面试" in GBK
  const raw = Buffer.concat([Buffer.from('From: hr@example.com\r\nSubject: '), subject, Buffer.from('\r\nMessage-ID: <gbk@example.com>\r\nContent-Type: text/plain; charset=GBK\r\n\r\nhi\r\n')]);
  const p = await parseMessage(raw, { timeoutMs: 5_000 });
  t.equal(p.subject, '面试');
});

t.test('id normalisation compares bracket-insensitively and ignores domain case', async (t) => {
  t.equal(normaliseId('<abc@Mail.Example.NET>'), normaliseId('abc@mail.example.net'));
  t.not(normaliseId('<ABC@example.net>'), normaliseId('<abc@example.net>'), 'the local part is compared as written');
  t.equal(normaliseId('< a b@example.net >'), 'ab@example.net', 'folding whitespace inside an id is ignored');
  t.same(parseIdList('<a@x.example>,<b@x.example>'), ['<a@x.example>', '<b@x.example>']);
  t.same(parseIdList('garbage without ids'), []);
  t.same(parseIdList(''), []);
});

t.test('ATS origin: the configured domains and their subdomains, nothing else', async (t) => {
  const d = ['ats.example.net'];
  t.ok(isAtsDomainId('x@ats.example.net', d));
  t.ok(isAtsDomainId('x@mail.ats.example.net', d), 'subdomain');
  t.notOk(isAtsDomainId('x@notats.example.net', d), 'a longer name that merely ends the same way');
  t.notOk(isAtsDomainId('x@ats.example.net.evil.example', d));
  t.notOk(isAtsDomainId('no-domain', d));
});

t.test('addresses match case-insensitively; dots and +tags only where the provider says (B32, B30)', async (t) => {
  t.equal(normaliseAddress('Alice.Smith+Jobs@GoogleMail.com'), normaliseAddress('alicesmith@gmail.com'));
  t.equal(normaliseAddress('ALICE@Example.COM'), normaliseAddress('alice@example.com'));
  t.not(normaliseAddress('a.lice@example.com'), normaliseAddress('alice@example.com'), 'dots matter outside consumer Gmail');
  t.not(normaliseAddress('alice+x@example.com'), normaliseAddress('alice@example.com'), '+tags matter outside consumer Gmail');
  t.equal(normaliseAddress('søren@bücher.example'), 'søren@xn--bcher-kva.example', 'IDN domains in their A-label form');
});

t.test('auto-replies are recognised from headers and subjects', async (t) => {
  const h = (...lines: string[]) => parseHeaderBlock(crlf(...lines, '', ''));
  t.ok(detectAutoReply(h('Auto-Submitted: auto-replied'), 'Re: x').autoReply);
  t.notOk(detectAutoReply(h('Auto-Submitted: no'), 'Re: x').autoReply);
  t.ok(detectAutoReply(h('X-Autoreply: yes'), 'x').autoReply);
  t.ok(detectAutoReply(h('Precedence: auto_reply'), 'x').autoReply);
  t.ok(detectAutoReply(h(), 'Out of Office: back Monday').autoReply);
  t.ok(detectAutoReply(h(), 'Automatic reply: Interview').autoReply);
  t.notOk(detectAutoReply(h(), 'Re: Interview on Monday').autoReply);
});

t.test('message keys: the same message twice is one key; a reused Message-ID is not (B12)', async (t) => {
  const { messageKey } = await import('../../daemon/store/threads.js');
  const a = messageKey('x@example.com', 'Mon, 03 Mar 2025 09:15:00 +0000', 'Shortlist', 'loc-a');
  t.equal(a, messageKey('x@example.com', 'Mon, 03 Mar 2025 09:15:00 +0000', 'Shortlist', 'loc-b'), 'same message seen in two places');
  t.not(a, messageKey('x@example.com', 'Tue, 04 Mar 2025 10:00:00 +0000', 'Fwd: Shortlist (updated)', 'loc-a'), 'edited forward reusing the id');
  t.not(messageKey(null, null, null, 'u1\nINBOX\n1\n5'), messageKey(null, null, null, 'u1\nINBOX\n1\n6'), 'id-less mail is never merged (B02)');
  t.match(a, /^m_[A-Za-z0-9_-]{26}$/);
});
