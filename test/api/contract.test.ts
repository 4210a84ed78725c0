import http from 'node:http';
import t, { type Test } from 'tap';
import { startDaemon, TOKEN } from '../helpers/daemon.js';

/**
 * The 401/403/400/404 cases of the contract, checked over real HTTP against a running daemon:
 * the status, the `{"error": {"code", "message"}}` shape, no stack trace, no secret echoed.
 */

interface ErrorBody { error: { code: string; message: string; details?: unknown } }

function assertError(t: Test, res: { status: number; body: unknown; raw: Buffer }, status: number, code: string, what: string): void {
  t.equal(res.status, status, `${what}: status ${status}`);
  const body = res.body as ErrorBody;
  t.equal(body?.error?.code, code, `${what}: code ${code}`);
  t.type(body?.error?.message, 'string', `${what}: a message for a person`);
  t.notMatch(res.raw.toString('utf8'), /\bat .+\.(js|ts):\d+/, `${what}: no stack trace`);
}

t.test('API contract: authentication, acting user, validation', async (t) => {
  // these probes fail authentication on purpose, many times: the per-address limit (tested in
  // security.test.ts) would answer 429 to the later ones
  const d = await startDaemon(t, { overrides: { api: { tokens: [TOKEN, 'second-token-for-rotation'], authFailures: { maxFailures: 0 } } } });
  await d.api('PUT', '/v1/users/u1', { body: { email: 'robin@example.com', name: 'Robin' } });
  await d.api('PUT', '/v1/users/u2', { body: { email: 'sam@example.com' } });

  await t.test('401 unauthorized', async (t) => {
    assertError(t, await d.api('GET', '/v1/users/u1', { token: null }), 401, 'unauthorized', 'no Authorization header');
    assertError(t, await d.api('GET', '/v1/users/u1', { token: 'wrong' }), 401, 'unauthorized', 'wrong token');
    assertError(t, await d.api('GET', '/v1/users/u1', { token: `${TOKEN}x` }), 401, 'unauthorized', 'token with a suffix');
    assertError(t, await d.api('GET', '/v1/users/u1', { token: null, headers: { authorization: `Basic ${TOKEN}` } }), 401, 'unauthorized', 'not a Bearer scheme');
    const bad = await d.api('GET', '/v1/users/u1', { token: 'guess-123' });
    t.notOk(bad.raw.toString().includes('guess-123'), 'the presented token is not echoed');
    t.equal((await d.api('GET', '/v1/users/u1', { token: 'second-token-for-rotation' })).status, 200, 'every configured token works (rotation)');
    t.equal((await d.api('PUT', '/v1/users/u3', { token: null, body: { email: 'x@example.com' } })).status, 401, 'writes are refused too');
    t.equal((await d.api('GET', '/v1/users/u3')).status, 404, 'and nothing was written');
  });

  await t.test('401 for every spelling of a /v1 path (percent-encoding, case, doubled slashes)', async (t) => {
    const { port } = new URL(d.daemon.apiUrl);
    // node:http sends the path exactly as written, as curl --path-as-is does
    const rawGet = (p: string, method = 'GET', body?: string) =>
      new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: Number(port), path: p, method, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        });
        req.on('error', reject);
        req.end(body);
      });
    for (const p of ['/%761/events', '/v%31/events', '/%76%31/users/u1', '//v1/events', '/V1/events', '/v1/events/', '/v1']) {
      const res = await rawGet(p);
      t.ok(res.status === 401 || res.status === 404, `${p}: refused (${res.status})`);
      t.notMatch(res.text, /"events"|robin@example\.com/, `${p}: no data leaks`);
    }
    const write = await rawGet('/%761/users/evil', 'PUT', JSON.stringify({ email: 'evil@example.com' }));
    t.equal(write.status, 401, 'a percent-encoded write is refused');
    t.equal((await d.api('GET', '/v1/users/evil')).status, 404, 'and wrote nothing');
    const badUrl = await rawGet('/v1/users/%ZZ');
    t.ok(badUrl.status === 400 || badUrl.status === 401, `a malformed /v1 URL without a token is refused (${badUrl.status})`);
    t.match(badUrl.text, /"error":\{"code":"(invalid_request|unauthorized)"/, 'in the contract\'s error shape');
  });

  await t.test('health and the API description need no token', async (t) => {
    const health = await fetch(`${d.daemon.apiUrl}/healthz`);
    t.equal(health.status, 200);
    const ready = await fetch(`${d.daemon.apiUrl}/readyz`);
    t.equal(ready.status, 200, 'ready once started');
    const spec = (await (await fetch(`${d.daemon.apiUrl}/openapi.json`)).json()) as { openapi: string; paths: Record<string, unknown> };
    t.match(spec.openapi, /^3\./, 'an OpenAPI 3 document');
    for (const p of ['/v1/users/{userId}', '/v1/users/{userId}/mailbox', '/v1/candidates/{candidateId}/threads', '/v1/threads/{threadId}', '/v1/messages/{messageKey}/raw', '/v1/outbound', '/v1/events']) {
      t.ok(spec.paths[p], `documents ${p}`);
    }
  });

  await t.test('403 forbidden: only the user themselves grants or revokes consent', async (t) => {
    const consent = { imap: { host: '127.0.0.1', port: 1, secure: true, auth: { user: 'robin', pass: 'hunter2-secret' } } };
    assertError(t, await d.api('PUT', '/v1/users/u1/mailbox', { body: consent }), 403, 'forbidden', 'consent without X-Acting-User');
    const other = await d.api('PUT', '/v1/users/u1/mailbox', { body: consent, actingUser: 'u2' });
    assertError(t, other, 403, 'forbidden', 'consent by another user');
    t.notOk(other.raw.toString().includes('hunter2-secret'), 'the password is not echoed');
    assertError(t, await d.api('PUT', '/v1/users/u1/mailbox', { body: consent, actingUser: 'u2', role: 'super_admin' }), 403, 'forbidden', 'consent by a super_admin for someone else');
    const own = await d.api('PUT', '/v1/users/u1/mailbox', { body: consent, actingUser: 'u1' });
    t.equal(own.status, 202, 'the user themselves may');
    t.notOk(own.raw.toString().includes('hunter2-secret'), 'the password is not echoed in the status');
    assertError(t, await d.api('DELETE', '/v1/users/u1/mailbox', { actingUser: 'u2' }), 403, 'forbidden', 'revocation by another user');
    assertError(t, await d.api('DELETE', '/v1/users/u1/mailbox', { actingUser: 'u2', role: 'admin' }), 403, 'forbidden', 'revocation by an admin');
    t.equal((await d.api('DELETE', '/v1/users/u1/mailbox', { actingUser: 'u2', role: 'super_admin' })).status, 204, 'a super_admin may revoke');
    const status = await d.api<{ state: string }>('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' });
    t.equal(status.body.state, 'revoked');
  });

  await t.test('400 invalid_request: the message names the problem', async (t) => {
    const badId = await d.api('PUT', '/v1/users/bad%20id', { body: { email: 'a@example.com' } });
    assertError(t, badId, 400, 'invalid_request', 'user id with a space');
    const longId = await d.api('PUT', `/v1/users/${'a'.repeat(129)}`, { body: { email: 'a@example.com' } });
    assertError(t, longId, 400, 'invalid_request', 'user id of 129 characters');
    const noEmail = await d.api<ErrorBody>('PUT', '/v1/users/u4', { body: { name: 'No Email' } });
    assertError(t, noEmail, 400, 'invalid_request', 'user without email');
    t.match(noEmail.body.error.message, /email/, 'the message names the missing field');
    const badEmail = await d.api<ErrorBody>('PUT', '/v1/users/u4', { body: { email: 'not an address' } });
    assertError(t, badEmail, 400, 'invalid_request', 'malformed email');
    t.match(badEmail.body.error.message, /body\.email must be an email address like name@example\.com/, 'the message says what an email address looks like, not a regular expression');
    const wrongAuth = await d.api<ErrorBody>('PUT', '/v1/users/u2/mailbox', { actingUser: 'u2', body: { imap: { host: 'imap.example.com', port: 993, secure: true, auth: { username: 'sam', password: 'p4ss-do-not-echo' } } } });
    assertError(t, wrongAuth, 400, 'invalid_request', 'auth with the wrong field names');
    t.match(wrongAuth.body.error.message, /body\.imap\.auth/, 'the message points at imap.auth');
    t.notOk(wrongAuth.raw.toString().includes('p4ss-do-not-echo'), 'the password is not echoed');
    const noType = await d.api<ErrorBody>('PUT', '/v1/users/u4', { body: 'email=a@example.com', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assertError(t, noType, 400, 'invalid_request', 'a form body instead of JSON');
    t.match(noType.body.error.message, /Content-Type: application\/json/, 'the message names the content type to send');
    const notJson = await d.api('PUT', '/v1/users/u4', { body: '{"email": ', headers: { 'content-type': 'application/json' } });
    assertError(t, notJson, 400, 'invalid_request', 'body that is not JSON');
    assertError(t, await d.api('GET', '/v1/users/u1/mailbox', { actingUser: 'u1', role: 'owner' }), 400, 'invalid_request', 'unknown X-Acting-Role');
    assertError(t, await d.api('GET', '/v1/users/u1/mailbox', { actingUser: 'u 1' }), 400, 'invalid_request', 'malformed X-Acting-User');
    const noImap = await d.api<ErrorBody>('PUT', '/v1/users/u2/mailbox', { actingUser: 'u2', body: { smtp: {} } });
    assertError(t, noImap, 400, 'invalid_request', 'consent without imap');
    const badPort = await d.api('PUT', '/v1/users/u2/mailbox', { actingUser: 'u2', body: { imap: { host: 'imap.example.com', port: 70000, secure: true, auth: { user: 'sam', pass: 'p4ss-do-not-echo' } } } });
    assertError(t, badPort, 400, 'invalid_request', 'port out of range');
    t.notOk(badPort.raw.toString().includes('p4ss-do-not-echo'), 'the password is not echoed in a validation error');
    const badSince = await d.api('PUT', '/v1/users/u2/mailbox', { actingUser: 'u2', body: { imap: { host: 'imap.example.com', port: 993, secure: true, auth: { user: 'sam', pass: 'x' } }, syncSince: 'last tuesday' } });
    assertError(t, badSince, 400, 'invalid_request', 'syncSince that is not a date');
    assertError(t, await d.api('PUT', '/v1/candidates/c1', { body: { emails: ['pat@example.org', 'nope'] } }), 400, 'invalid_request', 'candidate with a malformed address');
    assertError(t, await d.api('GET', '/v1/candidates/c1/threads?limit=0'), 400, 'invalid_request', 'limit 0');
    assertError(t, await d.api('POST', '/v1/outbound', { body: { userId: 'u1', messageId: 'no-brackets', candidateIds: ['c1'] } }), 400, 'invalid_request', 'outbound Message-ID without angle brackets');
    const typed = await d.api<ErrorBody>('PUT', '/v1/users/u4', { body: { email: 'a@example.com', name: true } });
    assertError(t, typed, 400, 'invalid_request', 'a boolean where a name string belongs');
    t.match(typed.body.error.message, /name/, 'the message names the field');
    assertError(t, await d.api('PUT', '/v1/users/u2/mailbox', { actingUser: 'u2', body: { imap: { host: 'imap.example.com', port: 993, secure: true, auth: { user: 'sam', pass: 12345 } } } }), 400, 'invalid_request', 'a number as the password');
    assertError(t, await d.api('GET', '/v1/users/%ZZ'), 400, 'invalid_request', 'bad percent-encoding in the path');
    assertError(t, await d.api('GET', `/v1/threads/t_${'x'.repeat(600)}`), 400, 'invalid_request', 'a path segment of 600 characters');
    t.equal((await d.api('GET', '/v1/candidates/c1/threads?limit=5')).status, 200, 'query strings are still read as numbers');
    t.equal((await d.api('GET', '/v1/users/u4')).status, 404, 'no invalid request wrote anything');
  });

  await t.test('422 unprocessable: an IMAP host that does not resolve', async (t) => {
    const res = await d.api<ErrorBody>('PUT', '/v1/users/u2/mailbox', { actingUser: 'u2', body: { imap: { host: 'no-such-host.invalid', port: 993, secure: true, auth: { user: 'sam', pass: 'x' } } } });
    assertError(t, res, 422, 'unprocessable', 'unresolvable host');
    t.match(res.body.error.message, /no-such-host\.invalid/, 'the message names the host');
  });

  await t.test('404 not_found on unknown ids', async (t) => {
    assertError(t, await d.api('GET', '/v1/threads/t_nope'), 404, 'not_found', 'unknown thread');
    assertError(t, await d.api('GET', '/v1/messages/m_nope'), 404, 'not_found', 'unknown message');
    assertError(t, await d.api('GET', '/v1/messages/m_nope/raw'), 404, 'not_found', 'unknown message raw');
    assertError(t, await d.api('GET', '/v1/users/nobody/mailbox', { actingUser: 'nobody' }), 404, 'not_found', 'unknown user mailbox');
    assertError(t, await d.api('GET', '/v1/nothing-here'), 404, 'not_found', 'unknown path');
  });
});
