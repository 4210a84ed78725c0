// How the mail clients people actually use write a message: header sets, Message-ID shapes,
// MIME structure and quoting of Gmail, Outlook (with Thread-Index), Apple Mail and
// Thunderbird, plus bulk mail (newsletters). Pure functions of a seeded random source, so
// the same seed always gives the same bytes. All people and domains are invented
// (example.com / example.org; ATS ids in the configured ATS domain).

export const CLIENTS = ['gmail', 'outlook', 'apple', 'thunderbird'];

const WORDS = (
  'the interview schedule role team offer salary start date availability thanks regards call ' +
  'monday tuesday wednesday thursday friday morning afternoon confirm feedback position hiring ' +
  'manager recruiter candidate experience project deadline review meeting agenda notes budget ' +
  'quarter report update plan design engineer product customer support contract reference ' +
  'portfolio questions looking forward happy great sounds good please attached document resume ' +
  'onsite remote office travel location benefits package next steps coffee lunch week month'
).split(' ');

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** RFC 5322 date with a numeric zone, the way clients write it. */
export function rfcDate(d, offsetMin = 0) {
  const t = new Date(d.getTime() + offsetMin * 60_000);
  const p = (n) => String(n).padStart(2, '0');
  const sign = offsetMin < 0 ? '-' : '+';
  const zone = `${sign}${p(Math.floor(Math.abs(offsetMin) / 60))}${p(Math.abs(offsetMin) % 60)}`;
  return `${DAYS[t.getUTCDay()]}, ${t.getUTCDate()} ${MONTHS[t.getUTCMonth()]} ${t.getUTCFullYear()} ${p(t.getUTCHours())}:${p(t.getUTCMinutes())}:${p(t.getUTCSeconds())} ${zone}`;
}

/** A seeded random source (sfc32): `next()` in [0, 1). */
export function createRandom(seed) {
  let a = 0x9e3779b9 ^ seed, b = 0x243f6a88 ^ (seed * 31), c = 0xb7e15162, d = 1;
  const next32 = () => {
    a |= 0; b |= 0; c |= 0; d |= 0;
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return t >>> 0;
  };
  for (let i = 0; i < 16; i++) next32();
  const r = {
    next: () => next32() / 4294967296,
    int: (n) => Math.floor(r.next() * n),
    range: (lo, hi) => lo + Math.floor(r.next() * (hi - lo + 1)),
    pick: (arr) => arr[Math.floor(r.next() * arr.length)],
    chance: (p) => r.next() < p,
    hex: (n) => { let s = ''; while (s.length < n) s += next32().toString(16).padStart(8, '0'); return s.slice(0, n); },
    bytes: (n) => { const b = Buffer.alloc(n); for (let i = 0; i < n; i += 4) b.writeUInt32LE(next32(), Math.min(i, n - 4)); return b; },
    /** Log-normal-ish sizes: most small, a long tail. */
    skewed: (median, max) => Math.min(max, Math.round(median * Math.exp((r.next() + r.next() + r.next() - 1.5) * 1.6))),
  };
  return r;
}

const uuid = (rnd) => { const h = rnd.hex(32).toUpperCase(); return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`; };
const b64 = (buf) => buf.toString('base64');

/** A fresh Message-ID in the style of `client`; `atsDomain` makes it an ATS-sent one. */
export function messageIdFor(rnd, client, fromDomain, atsDomain = null) {
  if (atsDomain) return `<${rnd.hex(16)}.${rnd.hex(8)}@${atsDomain}>`;
  switch (client) {
    case 'gmail': return `<CA${b64(rnd.bytes(30)).replace(/[/=]/g, '_').replace(/\+/g, '+')}@mail.gmail.com>`;
    case 'outlook': return `<${rnd.hex(12).toUpperCase()}${rnd.hex(8).toUpperCase()}@PR3P192MB${rnd.range(1000, 9999)}.EURP192.PROD.OUTLOOK.COM>`;
    case 'apple': return `<${uuid(rnd)}@${fromDomain}>`;
    case 'thunderbird': return `<${rnd.hex(8)}-${rnd.hex(4)}-${rnd.hex(4)}-${rnd.hex(4)}-${rnd.hex(12)}@${fromDomain}>`;
    default: return `<${rnd.hex(20)}.newsletter@mailer.example.org>`;
  }
}

/** Outlook's Thread-Index: 22 bytes (FILETIME + GUID) for a conversation, 5 more per reply. */
export function threadIndex(rnd, root, depth) {
  const parts = [root];
  for (let i = 0; i < depth; i++) parts.push(rnd.bytes(5));
  return b64(Buffer.concat(parts));
}

export function sentence(rnd, words) {
  const out = [];
  for (let i = 0; i < words; i++) out.push(rnd.pick(WORDS));
  const s = out.join(' ');
  return `${s[0].toUpperCase()}${s.slice(1)}.`;
}

export function paragraphText(rnd, chars) {
  const lines = [];
  let n = 0;
  while (n < chars) {
    const s = sentence(rnd, rnd.range(6, 16));
    lines.push(s);
    n += s.length + 1;
  }
  // wrap at ~72 columns like clients do
  const words = lines.join(' ').split(' ');
  const wrapped = [];
  let line = '';
  for (const w of words) {
    if (line.length + w.length + 1 > 72) { wrapped.push(line); line = w; } else line = line ? `${line} ${w}` : w;
  }
  if (line) wrapped.push(line);
  return wrapped.join('\r\n');
}

const html = (text) => `<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head><body><div dir="ltr">${text.split('\r\n').map((l) => (l.startsWith('>') ? `<blockquote>${l.slice(1)}</blockquote>` : `<div>${l || '<br>'}</div>`)).join('\r\n')}</div></body></html>`;

function base64Lines(buf) {
  const s = buf.toString('base64');
  const out = [];
  for (let i = 0; i < s.length; i += 76) out.push(s.slice(i, i + 76));
  return out.join('\r\n');
}

/** Transport headers a receiving provider adds (Received, DKIM, authentication results). */
function transportHeaders(rnd, m) {
  const domain = m.from.address.split('@')[1];
  const hops = [];
  const n = m.inbound ? rnd.range(2, 5) : 1;
  for (let i = 0; i < n; i++) {
    hops.push(`Received: from mx${rnd.range(1, 9)}.${i ? 'example.com' : domain} (mx${rnd.range(1, 9)}.${domain} [192.0.2.${rnd.range(1, 254)}])\r\n\tby mail.example.com with ESMTPS id ${rnd.hex(12)}\r\n\tfor <${m.to[0].address}>; ${rfcDate(m.date)}`);
  }
  if (!m.inbound) return hops;
  return [
    ...hops,
    `Authentication-Results: mail.example.com;\r\n\tdkim=pass header.d=${domain} header.s=s1 header.b=${rnd.hex(8)};\r\n\tspf=pass smtp.mailfrom=${domain};\r\n\tdmarc=pass (p=NONE) header.from=${domain}`,
    `DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=${domain}; s=s1;\r\n\tt=${Math.floor(m.date.getTime() / 1000)}; h=to:subject:message-id:date:from:mime-version:from:to:cc;\r\n\tbh=${b64(rnd.bytes(32))};\r\n\tb=${base64Lines(rnd.bytes(256)).replace(/\r\n/g, '\r\n\t ')}`,
  ];
}

const addr = (a) => (a.name ? `"${a.name}" <${a.address}>` : a.address);

/**
 * One message as RFC 5322 bytes (CRLF). `m`: { client, from, to[], cc[], subject, date,
 * messageId, inReplyTo, references[], threadIndex, body, quote, attachments[{filename,
 * contentType, content}], inbound, listId }.
 */
export function renderMessage(rnd, m) {
  const h = [...transportHeaders(rnd, m)];
  const tz = rnd.pick([0, 60, 120, -300, -420, 330]);
  const mime = [];
  switch (m.client) {
    case 'gmail':
      h.push('MIME-Version: 1.0', `From: ${addr(m.from)}`, `Date: ${rfcDate(m.date, tz)}`, `Message-ID: ${m.messageId}`);
      break;
    case 'outlook':
      h.push(`From: ${addr(m.from)}`, `Date: ${rfcDate(m.date, tz)}`, `Message-ID: ${m.messageId}`, `Thread-Topic: ${m.subject.replace(/^(re|fw|aw): /i, '')}`, `Thread-Index: ${m.threadIndex}`,
        'Accept-Language: en-US', 'Content-Language: en-US', 'X-MS-Has-Attach: ' + (m.attachments.length ? 'yes' : ''), 'X-MS-TNEF-Correlator:',
        `x-ms-exchange-messagesentrepresentingtype: 1`, `x-ms-publictraffictype: Email`, `x-ms-office365-filtering-correlation-id: ${uuid(rnd).toLowerCase()}`,
        'MIME-Version: 1.0');
      break;
    case 'apple':
      h.push(`From: ${addr(m.from)}`, 'Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3731.500.231\\))', `Date: ${rfcDate(m.date, tz)}`, `Message-Id: ${m.messageId}`, 'X-Mailer: Apple Mail (2.3731.500.231)');
      break;
    case 'thunderbird':
      h.push(`Message-ID: ${m.messageId}`, `Date: ${rfcDate(m.date, tz)}`, 'MIME-Version: 1.0', 'User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.6.0', 'Content-Language: en-US', `From: ${addr(m.from)}`);
      break;
    default:
      h.push(`From: ${addr(m.from)}`, `Date: ${rfcDate(m.date, tz)}`, `Message-ID: ${m.messageId}`, 'MIME-Version: 1.0', `List-Id: <${m.listId}>`, `List-Unsubscribe: <https://mailer.example.org/u/${rnd.hex(24)}>`, 'Precedence: bulk');
  }
  h.push(`To: ${m.to.map(addr).join(', ')}`);
  if (m.cc.length) h.push(`Cc: ${m.cc.map(addr).join(', ')}`);
  h.push(`Subject: ${m.subject}`);
  if (m.inReplyTo) h.push(`In-Reply-To: ${m.inReplyTo}`);
  if (m.references.length) h.push(`References: ${m.references.join('\r\n ')}`);

  const text = m.quote ? `${m.body}\r\n\r\n${m.quote}` : m.body;
  const textPart = [`Content-Type: text/plain; charset="UTF-8"${m.client === 'thunderbird' ? '; format=flowed' : ''}`, 'Content-Transfer-Encoding: 7bit', '', text, ''].join('\r\n');
  const bnd = (tag) => (m.client === 'apple' ? `Apple-Mail=_${uuid(rnd)}` : m.client === 'gmail' ? `000000000000${rnd.hex(16)}` : `_${tag}_${rnd.hex(20)}_`);
  let body;
  if (m.client === 'thunderbird' && !m.attachments.length) {
    mime.push(textPart.split('\r\n\r\n')[0]);
    body = `${text}\r\n`;
  } else {
    const alt = bnd('000');
    const htmlPart = ['Content-Type: text/html; charset="UTF-8"', 'Content-Transfer-Encoding: quoted-printable', '', html(text).replace(/=/g, '=3D'), ''].join('\r\n');
    const altBody = m.client === 'thunderbird' ? textPart : `--${alt}\r\n${textPart}\r\n--${alt}\r\n${htmlPart}\r\n--${alt}--\r\n`;
    const altHeaders = m.client === 'thunderbird' ? '' : `Content-Type: multipart/alternative; boundary="${alt}"`;
    if (!m.attachments.length) {
      mime.push(altHeaders);
      body = altBody;
    } else {
      const mix = bnd('004');
      const parts = [`${altHeaders ? `${altHeaders}\r\n\r\n` : ''}${altBody}`];
      for (const a of m.attachments) {
        parts.push([`Content-Type: ${a.contentType}; name="${a.filename}"`, `Content-Disposition: attachment; filename="${a.filename}"; size=${a.content.length}`, 'Content-Transfer-Encoding: base64', '', base64Lines(a.content), ''].join('\r\n'));
      }
      mime.push(`Content-Type: multipart/mixed; boundary="${mix}"`);
      body = `${parts.map((p) => `--${mix}\r\n${p}`).join('\r\n')}\r\n--${mix}--\r\n`;
    }
  }
  return Buffer.from(`${[...h, ...mime].join('\r\n')}\r\n\r\n${body}`, 'utf8');
}

/** "On <date>, <name> wrote:" and the parent's text quoted, as replies carry it. */
export function quoteOf(parent, maxLines = 40) {
  const lines = parent.body.split('\r\n').slice(0, maxLines).map((l) => `> ${l}`);
  return `On ${rfcDate(parent.date)}, ${parent.from.name ?? parent.from.address} wrote:\r\n${lines.join('\r\n')}`;
}
