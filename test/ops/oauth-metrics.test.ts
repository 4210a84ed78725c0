import t from 'tap';
import { dovecotEnv } from '../helpers/dovecot.js';
import { startDaemon, waitUntil } from '../helpers/daemon.js';
import { FakeOAuth2Provider } from '../fakes/oauth2-provider.js';

/**
 * mailsync_oauth_refreshes_total counts refreshes by provider and outcome. The token endpoint
 * is the fake OAuth2 provider on loopback (no real provider is reachable from tests).
 */
t.test('OAuth2 refreshes are counted by provider and outcome', async (t) => {
  const provider = await new FakeOAuth2Provider().start(t);
  const env = dovecotEnv();
  const d = await startDaemon(t, {
    overrides: {
      oauth2: { google: { tokenUrl: provider.tokenUrl, clientId: provider.opts.clientId, clientSecret: provider.opts.clientSecret } },
      sync: { tlsCaFile: env.caFile },
    },
  });
  const good = provider.grant('robin@example.com');
  const revoked = provider.grant('sam@example.com');
  provider.revoke('sam@example.com');
  const consent = (user: string, refreshToken: string) => ({
    // expired: the first login needs a refresh
    imap: { host: env.host, port: env.port, secure: false, auth: { user, oauth2: { provider: 'google', accessToken: 'expired', refreshToken, expiresAt: '2020-01-01T00:00:00Z' } } },
  });
  for (const [id, user, grant] of [['u-ok', 'robin@example.com', good], ['u-revoked', 'sam@example.com', revoked]] as const) {
    await d.api('PUT', `/v1/users/${id}`, { body: { email: user } });
    t.equal((await d.api('PUT', `/v1/users/${id}/mailbox`, { actingUser: id, body: consent(user, grant.refreshToken) })).status, 202);
  }
  const text = await waitUntil(async () => {
    const s = await (await fetch(`${d.daemon.apiUrl}/metrics`)).text();
    return /mailsync_oauth_refreshes_total\{provider="google",outcome="ok"\} [1-9]/.test(s) && /mailsync_oauth_refreshes_total\{provider="google",outcome="revoked"\} [1-9]/.test(s) ? s : null;
  }, 'an ok and a revoked refresh to be counted');
  t.match(text, /outcome="ok"/, 'the refresh that worked');
  t.match(text, /outcome="revoked"/, 'the grant the provider no longer accepts');
  t.notOk(text.includes(good.refreshToken), 'no token in the metrics');
});
