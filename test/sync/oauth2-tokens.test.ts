import t, { type Test } from 'tap';
import pino from 'pino';
import { openStack } from '../helpers/stack.js';
import { FakeOAuth2Provider } from '../fakes/oauth2-provider.js';
import { MailboxLogins, OAuth2Error, type OAuth2Settings, type Provider } from '../../daemon/sync/oauth2-tokens.js';
import { classifyError } from '../../daemon/sync/error-classifier.js';
import type { MailAuth } from '../../daemon/store/records.js';

/**
 * Token refresh decisions against the fake provider's token endpoint (a real HTTP server on
 * loopback): what each answer of the provider turns into, as the mailbox state a person sees.
 */

async function setup(t: Test, imap: MailAuth, settings: Partial<OAuth2Settings> = {}) {
  const provider = await new FakeOAuth2Provider({ expiresIn: 3600 }).start(t);
  const stack = await openStack(t);
  await stack.accounts.putUser('u1', { email: 'r@example.com', aliases: [], name: null });
  await stack.accounts.grantConsent({
    userId: 'u1', consent: { grantedAt: new Date().toISOString() }, imap: { host: '127.0.0.1', port: 1, secure: false }, smtp: null,
    sealedCredentials: stack.store.sealSecret({ imap, smtp: null }), syncSince: new Date().toISOString(),
  });
  const endpoint = { tokenUrl: provider.tokenUrl, clientId: provider.opts.clientId, clientSecret: provider.opts.clientSecret };
  const providers = { google: endpoint, microsoft: endpoint, custom: endpoint } as Record<Provider, typeof endpoint>;
  const logins = new MailboxLogins({ store: stack.store, accounts: stack.accounts, log: pino({ level: 'silent' }), settings: { providers, refreshMarginMs: 60_000, timeoutMs: 2_000, ...settings } });
  return { provider, stack, logins };
}

const expired = () => new Date(Date.now() - 1_000).toISOString();

t.test('a password login is passed through untouched', async (t) => {
  const { logins, provider } = await setup(t, { user: 'r', pass: 'pw' });
  t.same(await logins.login('u1', 'imap'), { auth: { user: 'r', pass: 'pw' }, oauth2: false });
  t.equal(provider.tokenRequests.length, 0);
});

t.test('a token far from expiry is used as it is; one without expiry until refused', async (t) => {
  const { logins, provider } = await setup(t, { user: 'r', oauth2: { provider: 'google', accessToken: 'at-1', refreshToken: 'rt', expiresAt: new Date(Date.now() + 3_600_000).toISOString() } });
  t.same((await logins.login('u1', 'imap')).auth, { user: 'r', accessToken: 'at-1' });
  t.equal(provider.tokenRequests.length, 0, 'no refresh');
});

t.test('the token endpoint is down: unreachable, retried later, not auth_failed', async (t) => {
  const { logins, provider } = await setup(t, { user: 'r', oauth2: { provider: 'google', accessToken: 'at-1', refreshToken: 'rt', expiresAt: expired() } });
  provider.failWith = { status: 503, body: { error: 'temporarily_unavailable' } };
  const err = await logins.login('u1', 'imap').catch((e: unknown) => e);
  t.ok(err instanceof OAuth2Error);
  const c = classifyError(err);
  t.same([c.state, c.code, c.minBackoffMs], ['unreachable', 'oauth2_endpoint_failed', 0]);
  t.match(c.message, /HTTP 503/);
  provider.failWith = null;
  // an outage is not remembered: the next attempt asks again
  await logins.login('u1', 'imap').catch(() => undefined);
  t.equal(provider.tokenRequests.length, 2);
});

t.test('mailsync\'s client credentials refused: auth_failed naming the config keys', async (t) => {
  const { stack } = await setup(t, { user: 'r', oauth2: { provider: 'microsoft', refreshToken: 'rt' } });
  const bad = new MailboxLogins({
    store: stack.store, accounts: stack.accounts, log: pino({ level: 'silent' }),
    settings: { providers: { google: { tokenUrl: '', clientId: '', clientSecret: '' }, microsoft: { tokenUrl: (await new FakeOAuth2Provider().start(t)).tokenUrl, clientId: 'wrong', clientSecret: 'x' }, custom: { tokenUrl: '', clientId: '', clientSecret: '' } }, refreshMarginMs: 60_000, timeoutMs: 2_000 },
  });
  const c = classifyError(await bad.login('u1', 'imap').catch((e: unknown) => e));
  t.same([c.state, c.code], ['auth_failed', 'oauth2_client_rejected']);
  t.match(c.message, /oauth2\.microsoft\.clientId/);
});

t.test('a provider without a token endpoint configured: auth_failed naming the keys', async (t) => {
  const { stack } = await setup(t, { user: 'r', oauth2: { provider: 'custom', refreshToken: 'rt' } });
  const logins = new MailboxLogins({
    store: stack.store, accounts: stack.accounts, log: pino({ level: 'silent' }),
    settings: { providers: { google: { tokenUrl: '', clientId: '', clientSecret: '' }, microsoft: { tokenUrl: '', clientId: '', clientSecret: '' }, custom: { tokenUrl: '', clientId: '', clientSecret: '' } }, refreshMarginMs: 60_000, timeoutMs: 2_000 },
  });
  const c = classifyError(await logins.login('u1', 'imap').catch((e: unknown) => e));
  t.same([c.state, c.code], ['auth_failed', 'oauth2_not_configured']);
  t.match(c.message, /oauth2\.custom\.tokenUrl/);
});

t.test('an expired token and no refresh token: the user must grant access again', async (t) => {
  const { logins, provider } = await setup(t, { user: 'r', oauth2: { provider: 'google', accessToken: 'at-1', expiresAt: expired() } });
  const c = classifyError(await logins.login('u1', 'imap').catch((e: unknown) => e));
  t.same([c.state, c.code], ['auth_failed', 'oauth2_token_expired']);
  t.match(c.message, /grant access again/);
  t.equal(provider.tokenRequests.length, 0, 'nothing to ask the provider');
});

t.test('a refresh that races a new consent never writes old credentials back', async (t) => {
  const { logins, provider, stack } = await setup(t, { user: 'r', oauth2: { provider: 'google', accessToken: 'at-1', refreshToken: 'x', expiresAt: expired() } });
  const grant = provider.grant('r');
  await stack.accounts.grantConsent({
    userId: 'u1', consent: { grantedAt: new Date().toISOString() }, imap: { host: '127.0.0.1', port: 1, secure: false }, smtp: null,
    sealedCredentials: stack.store.sealSecret({ imap: { user: 'r', oauth2: { provider: 'google', refreshToken: grant.refreshToken, expiresAt: expired() } }, smtp: null }), syncSince: new Date().toISOString(),
  });
  provider.tokenDelayMs = 200;
  const pending = logins.login('u1', 'imap');
  // meanwhile the user consents again with other credentials
  await new Promise((r) => setTimeout(r, 50));
  await stack.accounts.grantConsent({
    userId: 'u1', consent: { grantedAt: new Date().toISOString() }, imap: { host: '127.0.0.1', port: 1, secure: false }, smtp: null,
    sealedCredentials: stack.store.sealSecret({ imap: { user: 'r', pass: 'new-password' }, smtp: null }), syncSince: new Date().toISOString(),
  });
  await t.rejects(pending, /consent .* changed/);
  t.same((await logins.login('u1', 'imap')).auth, { user: 'r', pass: 'new-password' }, 'the new consent stands');
});
