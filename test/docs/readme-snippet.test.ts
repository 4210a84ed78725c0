import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { signatureHeader } from '../../daemon/events/signature.js';

/**
 * Integrators copy the webhook verification code from the README: it must accept what the
 * daemon signs and refuse tampering, replays and malformed headers without throwing.
 */
const readme = fs.readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
const section = readme.slice(readme.indexOf('### Verifying a webhook'));
const code = /```js\n([\s\S]*?)```/.exec(section)?.[1];

t.test('the README webhook verification sample works as printed', async (t) => {
  t.ok(code, 'the README has a js sample under "Verifying a webhook"');
  const mod = (await import(`data:text/javascript,${encodeURIComponent(`${code}\nexport { verify };`)}`)) as { verify: (secret: string, header: string, raw: string, tol?: number) => boolean };
  const secret = 'whsec-example';
  const body = JSON.stringify({ id: 'evt_1', type: 'message.created', data: { threadId: 't_1' } });
  const header = signatureHeader(secret, body);
  t.equal(mod.verify(secret, header, body), true, 'a delivery signed by the daemon verifies');
  t.equal(mod.verify(secret, header, body.replace('t_1', 't_2')), false, 'a changed body does not');
  t.equal(mod.verify('another-secret', header, body), false, 'another secret does not');
  const old = signatureHeader(secret, body, Math.floor(Date.now() / 1000) - 3600);
  t.equal(mod.verify(secret, old, body), false, 'an hour-old signature (a replay) does not');
  const [tPart] = header.split(',');
  for (const bad of [`${tPart},v1=${'z'.repeat(64)}`, `${tPart},v1=abc`, `${tPart}`, '', 'garbage', `t=abc,v1=${'0'.repeat(64)}`]) {
    t.equal(mod.verify(secret, bad, body), false, `a malformed header (${JSON.stringify(bad.slice(0, 24))}) is refused without throwing`);
  }
});
