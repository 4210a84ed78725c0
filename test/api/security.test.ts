import http from 'node:http';
import t from 'tap';
import { tokenMatches } from '../../daemon/api/server.js';
import { AuthFailureLimiter } from '../../daemon/api/auth-limiter.js';
import { startDaemon, TOKEN, waitUntil, type RunningDaemon } from '../helpers/daemon.js';

/**
 * The API's own defences, against the real server: bearer tokens compared without leaking
 * through length or position, failed authentication limited per remote address (429 with
 * Retry-After, also for a correct token, until the window passes), the body size limit, and
 * the acting-user headers checked against the contract's grammar.
 */

interface ErrorBody { error: { code: string; message: string } }

/** A GET from a chosen local address (the whole of 127.0.0.0/8 is loopback), so one test can be two clients. */
function getFrom(d: RunningDaemon, localAddress: string, path: string, token: string | null): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const url = new URL(path, d.daemon.apiUrl);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, path: url.pathname + url.search, localAddress, headers: token === null ? {} : { authorization: `Bearer ${token}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('token comparison: every listed token, nothing else, whatever its length', async (t) => {
  const tokens = ['alpha-token-1', 'beta-token-22'];
  t.ok(tokenMatches('alpha-token-1', tokens));
  t.ok(tokenMatches('beta-token-22', tokens));
  for (const wrong of ['', 'alpha-token-', 'alpha-token-1 ', 'alpha-token-12', 'ALPHA-TOKEN-1', 'x'.repeat(10_000)]) {
    t.notOk(tokenMatches(wrong, tokens), `refuses ${JSON.stringify(wrong.slice(0, 20))} (${wrong.length} chars)`);
  }
});

t.test('the limiter: failures inside the window block, old ones expire, successes are not its business', async (t) => {
  let now = 1_000_000;
  const limiter = new AuthFailureLimiter({ maxFailures: 3, windowMs: 10_000 }, () => now);
  t.equal(limiter.fail('a'), 0);
  now += 6_000;
  t.equal(limiter.fail('a'), 0);
  now += 6_000; // the first failure left the window
  t.equal(limiter.fail('a'), 0, 'two failures in the window: not blocked');
  t.equal(limiter.blockedFor('a'), 0);
  t.equal(limiter.fail('a'), 10_000, 'the third inside the window blocks for the window');
  t.equal(limiter.blockedFor('b'), 0, 'another address is not affected');
  now += 9_999;
  t.equal(limiter.blockedFor('a'), 1, 'still blocked 1 ms before the end');
  now += 1;
  t.equal(limiter.blockedFor('a'), 0, 'free when the window has passed');
  t.equal(limiter.fail('a'), 0, 'and counting starts again from nothing');

  const off = new AuthFailureLimiter({ maxFailures: 0, windowMs: 10_000 }, () => now);
  for (let i = 0; i < 100; i++) off.fail('a');
  t.equal(off.blockedFor('a'), 0, 'maxFailures 0 turns it off');

  const small = new AuthFailureLimiter({ maxFailures: 2, windowMs: 10_000, maxAddresses: 100 }, () => now);
  for (let i = 0; i < 1_000; i++) small.fail(`10.0.${i >> 8}.${i & 255}`);
  t.ok(small.size <= 100, `state stays bounded (${small.size} addresses kept)`);
});

t.test('failed authentication is limited per remote address', async (t) => {
  const d = await startDaemon(t, { overrides: { api: { host: '127.0.0.1', authFailures: { maxFailures: 3, windowSeconds: 2 }, metricsToken: 'metrics-token-7f' } } });
  const A = '127.0.0.1';
  const B = '127.0.0.2';
  for (let i = 0; i < 30; i++) t.equal((await getFrom(d, A, '/v1/events', TOKEN)).status, 200, `success ${i + 1} is not counted`);
  t.equal((await getFrom(d, A, '/v1/events', 'wrong-1')).status, 401, 'first wrong token: 401');
  t.equal((await getFrom(d, A, '/v1/events', null)).status, 401, 'a missing token counts too: 401');
  t.equal((await getFrom(d, A, '/v1/events', TOKEN)).status, 200, 'below the limit the right token still works');
  const third = await getFrom(d, A, '/metrics', 'wrong-metrics');
  t.equal(third.status, 401, 'a wrong /metrics token is a failure too, and the one that reaches the limit is still a 401');
  const blockedAt = Date.now();

  for (const [what, token] of [['the correct token', TOKEN], ['a wrong token', 'wrong-2']] as const) {
    const res = await getFrom(d, A, '/v1/events', token);
    t.equal(res.status, 429, `then ${what} gets 429`);
    const body = JSON.parse(res.body) as ErrorBody;
    t.equal(body.error.code, 'rate_limited');
    const retry = Number(res.headers['retry-after']);
    t.ok(retry >= 1 && retry <= 2, `Retry-After says when (${res.headers['retry-after']} s)`);
  }
  t.equal((await getFrom(d, A, '/metrics', 'metrics-token-7f')).status, 429, '/metrics is refused to that address as well');
  t.equal((await getFrom(d, B, '/v1/events', TOKEN)).status, 200, 'another address is not affected');
  t.equal((await getFrom(d, A, '/healthz', null)).status, 200, 'health checks need no token and are not limited');

  await waitUntil(async () => (await getFrom(d, A, '/v1/events', TOKEN)).status === 200, 'the block to pass', 10_000, 100);
  t.ok(Date.now() - blockedAt >= 1_500, `refused until the window passed (${Date.now() - blockedAt} ms)`);
  t.equal((await getFrom(d, A, '/v1/events', 'wrong-3')).status, 401, 'after the block a wrong token is a plain 401 again');

  const metrics = await getFrom(d, B, '/metrics', 'metrics-token-7f');
  t.match(metrics.body, /^mailsync_api_auth_blocks_total 1$/m, 'one block counted');
  t.match(metrics.body, /^mailsync_api_auth_failures_total 4$/m, 'four failures counted (blocked requests are not looked at)');
  const warn = d.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'too many failed authentications: address refused for a while');
  t.match(warn, { level: 40, remoteAddress: A, blockedSeconds: 2 }, 'the block is logged with the address');
  t.notOk(d.logs.some((l) => l.includes('wrong-1') || l.includes('wrong-metrics')), 'the wrong tokens are not logged');
});

t.test('request bodies above api.bodyLimitBytes get 413 and change nothing', async (t) => {
  const d = await startDaemon(t, { overrides: { api: { bodyLimitBytes: 1_024 } } });
  const name = (n: number) => 'N'.repeat(n);
  const fits = JSON.stringify({ email: 'robin@example.com', name: name(200) });
  t.equal((await d.api('PUT', '/v1/users/u1', { body: fits })).status, 200, 'a body under the limit is taken');
  const big = await d.api<ErrorBody>('PUT', '/v1/users/u2', { body: JSON.stringify({ email: 'sam@example.com', name: name(2_000) }) });
  t.equal(big.status, 413);
  t.equal(big.body.error.code, 'payload_too_large');
  t.match(big.body.error.message, /larger than 1024 bytes/, 'the message names the limit');
  t.equal((await d.api('GET', '/v1/users/u2')).status, 404, 'nothing was written');
  const chunked = await fetch(`${d.daemon.apiUrl}/v1/users/u3`, {
    method: 'PUT', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, duplex: 'half',
    body: new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode(JSON.stringify({ email: 'x@example.com', name: name(5_000) }))); c.close(); } }),
  } as RequestInit);
  t.equal(chunked.status, 413, 'also without a Content-Length (chunked)');
  t.equal((await d.api('GET', '/v1/users/u3')).status, 404, 'and nothing was written');
});

t.test('acting-user headers follow the contract\'s grammar, or 400 names the header', async (t) => {
  const d = await startDaemon(t);
  await d.api('PUT', '/v1/users/u1', { body: { email: 'robin@example.com' } });
  const get = (headers: Record<string, string>) => d.api<ErrorBody>('GET', '/v1/users/u1', { headers });
  for (const bad of ['', 'u 1', 'u!1', 'ü1', 'u/1', 'x'.repeat(129)]) {
    const res = await get({ 'x-acting-user': bad });
    t.equal(res.status, 400, `X-Acting-User ${JSON.stringify(bad.slice(0, 20))} → 400`);
    t.equal(res.body.error.code, 'invalid_request');
    t.match(res.body.error.message, /X-Acting-User/, 'the message names the header');
  }
  for (const good of ['u1', 'A.b_c:d-9', 'x'.repeat(128)]) t.equal((await get({ 'x-acting-user': good })).status, 200, `X-Acting-User ${good.slice(0, 20)} is fine`);
  for (const bad of ['', 'root', 'Admin', 'super-admin', 'user,admin']) {
    const res = await get({ 'x-acting-user': 'u1', 'x-acting-role': bad });
    t.equal(res.status, 400, `X-Acting-Role ${JSON.stringify(bad)} → 400`);
    t.match(res.body.error.message, /X-Acting-Role/, 'the message names the header');
  }
  for (const good of ['user', 'admin', 'super_admin']) t.equal((await get({ 'x-acting-user': 'u1', 'x-acting-role': good })).status, 200, `X-Acting-Role ${good} is fine`);
});
