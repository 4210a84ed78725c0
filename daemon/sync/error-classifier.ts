import type { MailboxState } from '../store/records.js';
import { PROVIDER_RULES } from './provider-errors.js';

/**
 * Turns what a connection attempt ended with into a mailbox state that a person can act on.
 * Data, not branches: each rule names the state, a stable code, the words for the user or
 * admin, and how long to wait before trying again. Providers' texts come from their public
 * reports (corpus/cases B35–B44).
 */

export interface Classified {
  state: Exclude<MailboxState, 'connecting' | 'initial_sync' | 'live' | 'revoked'>;
  code: string;
  message: string;
  /** Wait at least this long before the next attempt (provider hints, or to avoid lockouts). */
  minBackoffMs: number;
}

export interface ErrorLike {
  message?: string;
  code?: string;
  authenticationFailed?: boolean;
  tlsFailed?: boolean;
  serverResponseCode?: string;
  responseText?: string;
  throttleReset?: number;
}

const HOUR = 3_600_000;

interface Rule {
  test: (e: ErrorLike, text: string) => boolean;
  result: (e: ErrorLike) => Classified;
}

const RULES: Rule[] = [
  {
    test: (_e, t) => /imap (access |use )?is (disabled|not enabled)|not enabled for imap|imap.*(turned off|disabled)|please (log|sign) ?in (via|through) your web browser/i.test(t),
    result: () => ({
      state: 'imap_disabled', code: 'imap_disabled', minBackoffMs: HOUR,
      message: 'The mail provider says IMAP is turned off for this account. An administrator must allow IMAP (Google Workspace: Apps › Gmail › End user access; Microsoft 365: the mailbox\'s IMAP setting), or the organisation can use limited sync instead.',
    }),
  },
  {
    test: (e, t) => e.code === 'ETHROTTLE' || /too many simultaneous connections|request is throttled|authenticated but not connected|server busy|try again later/i.test(t),
    result: (e) => ({
      state: 'throttled', code: 'throttled', minBackoffMs: Math.max(e.throttleReset ?? 0, 60_000),
      message: 'The mail provider is limiting connections for this account (other apps and devices count too). Sync waits and tries again.',
    }),
  },
  {
    test: (e, t) => !!e.authenticationFailed || e.serverResponseCode === 'AUTHENTICATIONFAILED' || /authenticationfailed|invalid credentials|authentication failed|login failed/i.test(t),
    result: () => ({
      state: 'auth_failed', code: 'auth_failed', minBackoffMs: HOUR,
      message: 'The mail server refused the login. The user must grant access again with a current password or sign-in.',
    }),
  },
  {
    test: (e) => e.code === 'MAILSYNC_ERR_INSECURE',
    result: (e) => ({ state: 'unreachable', code: 'insecure', minBackoffMs: HOUR, message: e.message ?? 'The server offers no encryption.' }),
  },
  {
    test: (e, t) => !!e.tlsFailed || /^(ERR_TLS|ERR_SSL|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|ERR_OSSL)/.test(e.code ?? '') || e.code === 'ClosedAfterConnectTLS' || /certificate|ssl routines|tls/i.test(t),
    result: (e) => ({
      state: 'unreachable', code: 'tls_failed', minBackoffMs: 0,
      message: `A secure connection to the mail server failed (${e.code ?? 'TLS'}: ${e.message ?? 'handshake failed'}). Check the host, port and "secure" setting.`,
    }),
  },
  {
    test: (e) => ['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME'].includes(e.code ?? ''),
    result: (e) => ({ state: 'unreachable', code: 'dns_failed', minBackoffMs: 0, message: `The mail server's name does not resolve (${e.code}). Check the IMAP host.` }),
  },
  {
    test: (e) => ['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'CONNECT_TIMEOUT', 'GREETING_TIMEOUT', 'ETIMEOUT', 'UPGRADE_TIMEOUT', 'NoConnection', 'EConnectionClosed', 'ClosedAfterConnectText'].includes(e.code ?? ''),
    result: (e) => ({ state: 'unreachable', code: 'connection_failed', minBackoffMs: 0, message: `The mail server cannot be reached or closed the connection (${e.code}). Sync retries with backoff.` }),
  },
];

export function classifyError(err: unknown): Classified {
  const e = (err ?? {}) as ErrorLike;
  const text = `${e.responseText ?? ''} ${e.message ?? ''}`;
  for (const rule of [...PROVIDER_RULES, ...RULES]) if (rule.test(e, text)) return rule.result(e);
  return {
    state: 'unreachable', code: 'protocol_error', minBackoffMs: 0,
    message: `Sync with the mail server failed: ${(e.message ?? String(err)).slice(0, 300)}`,
  };
}
