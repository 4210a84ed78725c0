import net from 'node:net';
import path from 'node:path';
import t, { type Test } from 'tap';
import { createMailbox, dovecotEnv } from '../helpers/dovecot.js';
import { startDaemon, TOKEN } from '../helpers/daemon.js';
import { chromiumMissing, launchBrowser } from '../helpers/browser.js';
import { tempDir } from '../helpers/stack.js';

/**
 * The status page in headless Chromium: sign in with a token, see a mailbox go from
 * `connecting` to `live` as the page reloads itself, and an `auth_failed` one with its message.
 */

/**
 * A loopback TCP relay in front of the real Dovecot that holds every connection until
 * released, so a mailbox stays `connecting` for as long as the test needs to look at it.
 */
async function holdingRelay(t: Test, target: { host: string; port: number }) {
  let released = false;
  const held: net.Socket[] = [];
  const forward = (client: net.Socket) => {
    const upstream = net.connect(target.port, target.host);
    client.pipe(upstream).pipe(client);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  };
  const server = net.createServer((client) => (released ? forward(client) : held.push(client)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of held) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    release() {
      released = true;
      for (const s of held.splice(0)) forward(s);
    },
    get waiting() {
      return held.length;
    },
  };
}

/** Screenshots go to MAILSYNC_SCREENSHOT_DIR when set (to look at them), else to a temp dir. */
const shots = (t: Test) => process.env.MAILSYNC_SCREENSHOT_DIR ?? tempDir(t);

t.test('status page in headless Chromium', { skip: chromiumMissing() }, async (t) => {
  const env = dovecotEnv();
  const slow = await createMailbox('status-slow');
  const bad = await createMailbox('status-bad');
  const relay = await holdingRelay(t, { host: env.host, port: env.port });
  const d = await startDaemon(t, { overrides: { sync: { tlsCaFile: env.caFile, connectTimeoutSeconds: 120 } } });
  await d.api('PUT', '/v1/users/u-slow', { body: { email: slow.address } });
  await d.api('PUT', '/v1/users/u-bad', { body: { email: bad.address } });
  const consent = (port: number, user: string, pass: string) => ({ imap: { host: '127.0.0.1', port, secure: false, auth: { user, pass } }, syncSince: '2020-01-01T00:00:00Z' });
  t.equal((await d.api('PUT', '/v1/users/u-slow/mailbox', { actingUser: 'u-slow', body: consent(relay.port, slow.user, slow.pass) })).status, 202);
  t.equal((await d.api('PUT', '/v1/users/u-bad/mailbox', { actingUser: 'u-bad', body: consent(env.port, bad.user, 'wrong-password') })).status, 202);

  const context = await launchBrowser(t);
  const page = await context.newPage();
  const requested: string[] = [];
  page.on('request', (r) => requested.push(r.url()));

  await t.test('the page asks for a token and refuses a wrong one', async (t) => {
    const res = await page.goto(`${d.daemon.apiUrl}/status?refresh=1`);
    t.equal(res?.status(), 401, 'not signed in: 401 with the sign-in form');
    await page.fill('input[name=token]', 'not-the-token');
    await page.click('button[type=submit]');
    t.equal(await page.locator('[role=alert]').textContent(), 'That token is not accepted.');
    t.equal(await page.locator('table').count(), 0, 'and no status is shown');
  });

  await t.test('signed in: connecting, then live as the page reloads itself', async (t) => {
    await page.fill('input[name=token]', TOKEN);
    await page.click('button[type=submit]');
    const slowState = page.locator('tr[data-user="u-slow"] td.state');
    await slowState.waitFor();
    t.equal(await slowState.textContent(), 'connecting', 'u-slow is connecting while its server holds the connection');
    t.ok(relay.waiting > 0, 'the worker is waiting on the held connection');
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'mailsync_status');
    t.ok(session?.httpOnly, 'the session cookie is HttpOnly');
    t.equal(session?.sameSite, 'Strict');
    t.notOk(session?.value.includes(TOKEN), 'and does not hold the token');
    await page.screenshot({ path: path.join(shots(t), 'status-connecting.png'), fullPage: true });

    relay.release();
    // no reload from the test: the page's own refresh must bring the new state
    await page.locator('tr[data-user="u-slow"] td.state', { hasText: /^live$/ }).waitFor({ timeout: 30_000 });
    t.pass('u-slow shows live');
    t.match(await page.locator('tr[data-user="u-slow"] li[data-folder="INBOX"]').textContent(), /INBOX: checked \d+ s ago/, 'with its folders and how long ago they were checked');
    t.match(await page.locator('tr[data-user="u-slow"] td.last-sync').textContent(), /s ago/, 'and its last sync');
  });

  await t.test('an auth_failed mailbox with its message; the queues', async (t) => {
    const badState = page.locator('tr[data-user="u-bad"] td.state', { hasText: 'auth_failed' });
    await badState.waitFor({ timeout: 30_000 });
    const err = await page.locator('tr[data-user="u-bad"] td.last-error').textContent();
    t.match(err, /auth_failed\s+The mail server refused the login\. The user must grant access again/, 'the error code and the words for a person');
    t.notOk((await page.content()).includes(bad.pass), 'no password on the page');
    t.match(await page.locator('tr[data-queue="outbox"] td.depth').textContent(), /^0 — no webhook URL/);
    t.equal(await page.locator('tr[data-queue="relay"] td.depth').textContent(), '0', 'the relay queue runs with the daemon, empty');
    await page.screenshot({ path: path.join(shots(t), 'status-live.png'), fullPage: true });
  });

  await t.test('nothing is loaded from elsewhere; signing out ends the session', async (t) => {
    t.ok(requested.length > 3, 'the page was loaded several times');
    t.same(requested.filter((u) => !u.startsWith(d.daemon.apiUrl)), [], 'every request went to the daemon itself');
    await page.click('text=Sign out');
    await page.locator('input[name=token]').waitFor();
    t.equal(await page.locator('table').count(), 0, 'signed out: the form again');
    const direct = await fetch(`${d.daemon.apiUrl}/status`, { headers: { authorization: `Bearer ${TOKEN}` } });
    t.equal(direct.status, 200, 'a script can read the page with the bearer token');
    t.match(direct.headers.get('content-security-policy') ?? '', /default-src 'none'/, 'under a policy that allows no script');
  });
});
