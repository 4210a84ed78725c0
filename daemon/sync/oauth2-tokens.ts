import crypto from 'node:crypto';
import type { Logger } from 'pino';
import type { Accounts } from '../store/accounts.js';
import type { Store } from '../store/store.js';
import type { MailAuth, MailboxCredentials, OAuth2Auth } from '../store/records.js';

/**
 * Logins for a consented mailbox: the password, or an OAuth2 access token that is refreshed
 * before it expires. One refresh at a time per user (IMAP sync, imports and the relay share the
 * result), a rotated refresh token is stored sealed at once, and a grant the provider refused
 * (`invalid_grant`) is remembered so nothing asks the provider again until the user consents
 * anew: one refusal, not a retry storm.
 */

export type Provider = OAuth2Auth['oauth2']['provider'];

export interface ProviderEndpoint {
  tokenUrl: string;
  clientId: string;
  clientSecret: string;
  /** Sent with the refresh grant when set (Microsoft issues tokens per scope). */
  scope?: string;
}

export interface OAuth2Settings {
  providers: Record<Provider, ProviderEndpoint>;
  refreshMarginMs: number;
  timeoutMs: number;
}

/** What a mail client logs in with. */
export type LoginAuth = { user: string; pass: string } | { user: string; accessToken: string };

export type Protocol = 'imap' | 'smtp';

/** A refresh that failed, with the mailbox state it leads to. */
export class OAuth2Error extends Error {
  override readonly name = 'OAuth2Error';
  readonly code: string;
  readonly state: 'auth_failed' | 'unreachable';

  constructor(code: string, state: 'auth_failed' | 'unreachable', message: string) {
    super(message);
    this.code = code;
    this.state = state;
  }
}

const PROVIDER_NAMES: Record<Provider, string> = { google: 'Google', microsoft: 'Microsoft', custom: 'The OAuth2 provider' };

interface TokenResponse {
  access_token?: unknown;
  expires_in?: unknown;
  refresh_token?: unknown;
  error?: unknown;
  error_description?: unknown;
}

const fingerprint = (secret: string) => crypto.createHash('sha256').update(secret).digest('hex');

export class MailboxLogins {
  readonly #store: Store;
  readonly #accounts: Accounts;
  readonly #settings: OAuth2Settings;
  readonly #log: Logger;
  readonly #fetch: typeof fetch;
  readonly #inflight = new Map<string, Promise<MailboxCredentials>>();
  /** userId → fingerprint of a refresh token the provider refused. */
  readonly #deadGrants = new Map<string, string>();

  /** Told the outcome of every refresh that reached a token endpoint (metrics). */
  readonly #observe: (provider: string, outcome: 'ok' | 'failed' | 'revoked') => void;

  constructor(deps: { store: Store; accounts: Accounts; settings: OAuth2Settings; log: Logger; fetch?: typeof fetch; observe?: (provider: string, outcome: 'ok' | 'failed' | 'revoked') => void }) {
    this.#observe = deps.observe ?? (() => {});
    this.#store = deps.store;
    this.#accounts = deps.accounts;
    this.#settings = deps.settings;
    this.#log = deps.log;
    this.#fetch = deps.fetch ?? fetch;
  }

  /**
   * The login for a user's IMAP or SMTP server. An OAuth2 access token is refreshed when it
   * expires within the margin, or when `rejected` names the token the server just refused
   * (a token without a known expiry is used until then).
   */
  async login(userId: string, protocol: Protocol, opts: { rejected?: string } = {}): Promise<{ auth: LoginAuth; oauth2: boolean }> {
    const { creds } = await this.#read(userId);
    const auth = creds[protocol];
    if (!auth) throw new OAuth2Error('no_smtp_settings', 'auth_failed', `User ${userId} gave no ${protocol.toUpperCase()} settings with their consent.`);
    if ('pass' in auth) return { auth: { user: auth.user, pass: auth.pass }, oauth2: false };
    const o = auth.oauth2;
    const expires = o.expiresAt ? Date.parse(o.expiresAt) : NaN;
    const usable = !!o.accessToken && o.accessToken !== opts.rejected && !(expires - this.#settings.refreshMarginMs <= Date.now());
    if (usable) return { auth: { user: auth.user, accessToken: o.accessToken! }, oauth2: true };
    const refreshed = (await this.#refresh(userId, o.accessToken ?? null))[protocol] as OAuth2Auth;
    return { auth: { user: refreshed.user, accessToken: refreshed.oauth2.accessToken! }, oauth2: true };
  }

  /** nodemailer's `auth` for relaying as this user (XOAUTH2 with a fresh token, or the password). */
  async smtpAuth(userId: string): Promise<{ type: 'OAuth2'; user: string; accessToken: string } | { user: string; pass: string }> {
    const { auth } = await this.login(userId, 'smtp');
    return 'accessToken' in auth ? { type: 'OAuth2', user: auth.user, accessToken: auth.accessToken } : auth;
  }

  /** Forgets what is remembered about a user's grant (a new consent, a revocation). */
  forget(userId: string): void {
    this.#deadGrants.delete(userId);
  }

  async #read(userId: string): Promise<{ generation: number; creds: MailboxCredentials }> {
    const mbx = await this.#accounts.getMailbox(userId);
    if (!mbx) throw new OAuth2Error('no_consent', 'auth_failed', `User ${userId} has not granted access to a mailbox.`);
    return { generation: mbx.generation, creds: this.#store.openSecret<MailboxCredentials>(mbx.sealedCredentials) };
  }

  /** One refresh per user at a time; callers arriving meanwhile share its result. */
  #refresh(userId: string, staleToken: string | null): Promise<MailboxCredentials> {
    const running = this.#inflight.get(userId);
    if (running) return running;
    const p = this.#doRefresh(userId, staleToken).finally(() => this.#inflight.delete(userId));
    this.#inflight.set(userId, p);
    return p;
  }

  async #doRefresh(userId: string, staleToken: string | null): Promise<MailboxCredentials> {
    const { generation, creds } = await this.#read(userId);
    const current = (creds.imap && 'oauth2' in creds.imap ? creds.imap : creds.smtp) as OAuth2Auth | null;
    if (!current || !('oauth2' in current)) throw new OAuth2Error('no_oauth2', 'auth_failed', 'This consent holds no OAuth2 grant.');
    // another caller refreshed while this one waited for the store: use that token
    const cur = current.oauth2;
    if (cur.accessToken && cur.accessToken !== staleToken && !(Date.parse(cur.expiresAt ?? '') - this.#settings.refreshMarginMs <= Date.now())) return creds;
    const providerName = PROVIDER_NAMES[cur.provider];
    if (!cur.refreshToken) {
      throw new OAuth2Error('oauth2_token_expired', 'auth_failed', `The access token has expired and the consent holds no refresh token: the user must grant access again (with offline access).`);
    }
    const grant = fingerprint(cur.refreshToken);
    if (this.#deadGrants.get(userId) === grant) throw grantRefused(providerName);
    const endpoint = this.#settings.providers[cur.provider];
    if (!endpoint.tokenUrl || !endpoint.clientId) {
      throw new OAuth2Error('oauth2_not_configured', 'auth_failed', `Tokens of provider "${cur.provider}" cannot be refreshed: set oauth2.${cur.provider}.tokenUrl and oauth2.${cur.provider}.clientId (and clientSecret) in the configuration.`);
    }
    const body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: cur.refreshToken, client_id: endpoint.clientId });
    if (endpoint.clientSecret) body.set('client_secret', endpoint.clientSecret);
    if (endpoint.scope) body.set('scope', endpoint.scope);
    let res: Response;
    let json: TokenResponse;
    try {
      res = await this.#fetch(endpoint.tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body,
        signal: AbortSignal.timeout(this.#settings.timeoutMs),
      });
      const text = await res.text();
      try {
        json = JSON.parse(text) as TokenResponse;
      } catch {
        json = {};
      }
    } catch (err) {
      this.#observe(cur.provider, 'failed');
      throw new OAuth2Error('oauth2_endpoint_unreachable', 'unreachable', `${providerName}'s token endpoint cannot be reached (${(err as Error).name === 'TimeoutError' ? `no answer within ${this.#settings.timeoutMs} ms` : (err as Error).message}). Sync retries with backoff.`);
    }
    const error = typeof json.error === 'string' ? json.error : null;
    if (!res.ok || error !== null || typeof json.access_token !== 'string') {
      this.#log.warn({ userId, provider: cur.provider, status: res.status, error }, 'access token refresh refused');
      this.#observe(cur.provider, error === 'invalid_grant' ? 'revoked' : 'failed');
      if (error === 'invalid_grant') {
        this.#deadGrants.set(userId, grant);
        throw grantRefused(providerName);
      }
      if (error === 'invalid_client' || error === 'unauthorized_client') {
        throw new OAuth2Error('oauth2_client_rejected', 'auth_failed', `${providerName} refused mailsync's client credentials (${error}): check oauth2.${cur.provider}.clientId and clientSecret.`);
      }
      if (res.status >= 500 || res.status === 429 || res.ok) {
        throw new OAuth2Error('oauth2_endpoint_failed', 'unreachable', `${providerName}'s token endpoint failed (HTTP ${res.status}${error ? `, ${error}` : ''}). Sync retries with backoff.`);
      }
      throw new OAuth2Error('oauth2_refresh_refused', 'auth_failed', `${providerName} refused to refresh the access token (HTTP ${res.status}${error ? `, ${error}` : ''}): the user must grant access again.`);
    }
    this.#observe(cur.provider, 'ok');
    const expiresIn = typeof json.expires_in === 'number' ? json.expires_in : Number(json.expires_in);
    const rotated = typeof json.refresh_token === 'string' && json.refresh_token !== cur.refreshToken ? json.refresh_token : null;
    const next: OAuth2Auth['oauth2'] = {
      ...cur,
      accessToken: json.access_token,
      // without expires_in the token is used until a server refuses it
      expiresAt: Number.isFinite(expiresIn) ? new Date(Date.now() + expiresIn * 1000).toISOString() : undefined,
      refreshToken: rotated ?? cur.refreshToken,
    };
    // IMAP and SMTP usually share one grant: every login holding this refresh token moves on together
    const update = (a: MailAuth | null): MailAuth | null => (a && 'oauth2' in a && a.oauth2.refreshToken === cur.refreshToken ? { user: a.user, oauth2: { ...next, provider: a.oauth2.provider } } : a);
    const updated: MailboxCredentials = { imap: update(creds.imap)!, smtp: update(creds.smtp) };
    const saved = await this.#accounts.updateCredentials(userId, generation, this.#store.sealSecret(updated));
    if (!saved) throw new OAuth2Error('no_consent', 'auth_failed', `The consent of user ${userId} changed while its token was refreshed.`);
    this.#log.info({ userId, provider: cur.provider, expiresInSeconds: Number.isFinite(expiresIn) ? expiresIn : null, refreshTokenRotated: !!rotated }, 'access token refreshed');
    return updated;
  }
}

function grantRefused(providerName: string): OAuth2Error {
  return new OAuth2Error('oauth2_grant_revoked', 'auth_failed', `${providerName} no longer accepts this mailbox's grant (invalid_grant: access was revoked, the password changed or the grant expired). The user must grant access again.`);
}
