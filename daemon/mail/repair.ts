/**
 * Repairs applied to a copy of a message before mailparser reads it (the stored original is
 * never changed). Each fixes a fault seen in real mail that mailparser reads wrongly:
 * - an inline or disposition-less message/rfc822 part is merged into the text and lost as an
 *   attachment (B22): it is marked as an attachment;
 * - a text/html part without a charset parameter whose <meta> names one is decoded as UTF-8
 *   (B17): the meta charset is added to the part's Content-Type;
 * - quoted-printable `=0D=0A` followed by a real line break doubles every line (B21): the
 *   two are collapsed into one break, as lenient readers do.
 * The message is handled as latin1 text so every byte maps to one character and back.
 */

const BOUNDARY = /boundary\s*=\s*(?:"([^"]+)"|([^\s;]+))/gi;

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Rewrites one part's header block (without its terminating empty line). */
function repairPartHeaders(headers: string, body: string): string {
  const ctMatch = /^content-type:[ \t]*([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)/im.exec(headers);
  const ct = ctMatch ? ctMatch[1]!.replace(/\r?\n[ \t]/g, ' ') : '';
  const type = ct.split(';')[0]!.trim().toLowerCase();
  let out = headers;
  if (type === 'message/rfc822') {
    const disp = /^content-disposition:[ \t]*([^\r\n;]*)/im.exec(out);
    if (!disp) out = `${out}\r\nContent-Disposition: attachment`;
    else if (disp[1]!.trim().toLowerCase() !== 'attachment') out = out.replace(/^(content-disposition:[ \t]*)[^\r\n;]*/im, '$1attachment');
  } else if (type === 'text/html' && ctMatch && !/charset\s*=/i.test(ct)) {
    // the meta may be quoted-printable encoded (=3D) and soft-wrapped (=\r\n)
    const decoded = body.slice(0, 4096).replace(/=\r?\n/g, '').replace(/=3D/gi, '=');
    const meta = /<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)/i.exec(decoded);
    if (meta) out = out.replace(/^(content-type:[ \t]*text\/html)/im, `$1; charset=${meta[1]}`);
  }
  return out;
}

export function repairForParsing(raw: Buffer): Buffer {
  let text = raw.toString('latin1');
  const original = text;
  if (/quoted-printable/i.test(text) && /=0D=0A\r?\n/i.test(text)) {
    text = text.replace(/=0D=0A(\r?\n)/gi, '$1');
  }
  const boundaries = new Set<string>();
  for (const m of text.matchAll(BOUNDARY)) boundaries.add(m[1] ?? m[2]!);
  for (const b of boundaries) {
    const re = new RegExp(`(^|\\n)--${escapeRe(b)}[ \\t]*\\r?\\n`, 'g');
    let result = '';
    let last = 0;
    for (const m of text.matchAll(re)) {
      const start = (m.index ?? 0) + m[0].length;
      const end = text.slice(start).search(/\r?\n\r?\n/);
      if (end < 0) continue;
      const headers = text.slice(start, start + end);
      const repaired = repairPartHeaders(headers, text.slice(start + end, start + end + 4200));
      if (repaired === headers) continue;
      result += text.slice(last, start) + repaired;
      last = start + end;
    }
    if (last > 0) text = result + text.slice(last);
  }
  // a single-part text/html message
  const top = text.search(/\r?\n\r?\n/);
  if (top > 0) {
    const headers = text.slice(0, top);
    const repaired = /^content-type:[ \t]*text\/html/im.test(headers) ? repairPartHeaders(headers, text.slice(top, top + 4200)) : headers;
    if (repaired !== headers) text = repaired + text.slice(top);
  }
  return text === original ? raw : Buffer.from(text, 'latin1');
}
