import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger, SECRET_KEYS } from '../../daemon/ops/logger.js';

/**
 * The one redact list: every field that can hold a credential or mail content is censored at
 * the depths where the daemon logs them (a consent, an error carrying a config, a request).
 */

function capture(): { log: ReturnType<typeof createLogger>; lines: () => string[] } {
  const out: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      out.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  return { log: createLogger({ level: 'debug', pretty: false }, sink), lines: () => out };
}

t.test('every secret field is censored at every depth, in arrays too, and nothing else is', async (t) => {
  const { log, lines } = capture();
  for (const key of SECRET_KEYS) {
    const v = `value-of-${key}-5c0e`;
    log.info({ [key]: v }, 'top');
    log.info({ a: { [key]: v } }, 'one down');
    log.info({ a: { b: { [key]: v } } }, 'two down');
    log.info({ a: { b: { c: { [key]: v } } } }, 'three down');
    log.info({ users: [{ user: 'ats', [key]: v }] }, 'in an array');
  }
  log.info({ req: { headers: { authorization: 'Bearer hdr-5c0e', cookie: 'sid=hdr-cookie-5c0e', 'x-mailsync-signature': 't=1,v1=hdr-sig-5c0e' } } }, 'request');
  log.info({ imap: { host: 'imap.example.com', auth: { user: 'robin@example.com', pass: 'pw-5c0e-consent' } }, smtp: { auth: { user: 'robin', oauth2: { provider: 'google', accessToken: 'at-5c0e', refreshToken: 'rt-5c0e' } } } }, 'a consent');
  const text = lines().join('\n');
  t.equal(lines().length, SECRET_KEYS.length * 5 + 2);
  t.notMatch(text, /5c0e/, 'no secret value in any line');
  t.match(text, /"user":"robin@example.com"/, 'ordinary fields stay');
  t.match(text, /"host":"imap.example.com"/);
  t.equal(text.split('[redacted]').length - 1, SECRET_KEYS.length * 5 + 3 + 3, 'each secret replaced by [redacted]');
});
