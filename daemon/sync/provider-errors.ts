import type { ImapFlow } from 'imapflow';
import type { Logger } from 'pino';
import type { Classified, ErrorLike } from './error-classifier.js';

/**
 * What Gmail and Microsoft 365 say when they refuse service, turned into mailbox states. These
 * rules run before the generic ones in error-classifier.ts: a provider's words are more precise
 * than a status code. Texts are those of public reports (corpus/cases B36, B37, B39).
 */

const HOUR = 3_600_000;
const MINUTE = 60_000;

/** `reason`: the text of a BYE that ended the connection (imapflow keeps it there). */
type ProviderErrorLike = ErrorLike & { state?: string; reason?: string };

export interface ProviderRule {
  test: (e: ProviderErrorLike, text: string) => boolean;
  result: (e: ProviderErrorLike) => Classified;
}

export const PROVIDER_RULES: ProviderRule[] = [
  {
    // a refresh that failed (oauth2-tokens.ts) carries its own state and words
    test: (e) => typeof e.code === 'string' && e.code.startsWith('oauth2_') && (e.state === 'auth_failed' || e.state === 'unreachable'),
    result: (e) => ({
      state: e.state as 'auth_failed' | 'unreachable', code: e.code!, message: e.message ?? 'The OAuth2 token could not be refreshed.',
      // a refused grant stays refused until the user consents again: look rarely
      minBackoffMs: e.state === 'auth_failed' ? HOUR : 0,
    }),
  },
  {
    // Gmail: "[ALERT] Your account is not enabled for IMAP use" / Workspace admin turned IMAP off
    test: (_e, t) => /not enabled for imap|imap (access )?is disabled|imap is turned off|imap access is not allowed/i.test(t),
    result: () => ({
      state: 'imap_disabled', code: 'imap_disabled', minBackoffMs: HOUR,
      message: 'The mail provider says IMAP is turned off for this account. An administrator must allow IMAP (Google Workspace: Admin console › Apps › Gmail › End user access › POP and IMAP access; Microsoft 365: Exchange admin center › the mailbox › Email apps › IMAP), or the organisation can use limited sync instead.',
    }),
  },
  {
    // Gmail asks for a browser sign-in after a suspicious login: credentials are fine, a person must act
    test: (_e, t) => /log ?in via your web browser|web login required/i.test(t),
    result: () => ({
      state: 'auth_failed', code: 'web_login_required', minBackoffMs: HOUR,
      message: 'The provider wants the user to sign in once through a web browser before it accepts IMAP logins again; then grant access again.',
    }),
  },
  {
    // Microsoft 365 rate limits, with the wait it suggests (B37 phase 2)
    test: (e, t) => e.code === 'ETHROTTLE' || /request is throttled/i.test(t),
    result: (e) => ({
      state: 'throttled', code: 'throttled', minBackoffMs: Math.max(e.throttleReset ?? suggestedBackoff(e.responseText ?? e.message ?? '') ?? 0, MINUTE),
      message: `The mail provider is throttling this account${e.throttleReset ? ` and asked for a pause of ${Math.ceil(e.throttleReset / 1000)} s` : ''}. Sync waits and resumes where it stopped.`,
    }),
  },
  {
    // Microsoft 365 after a good login (B37 phase 1): not a credentials problem; back off minutes
    test: (_e, t) => /authenticated but not connected/i.test(t),
    result: () => ({
      state: 'throttled', code: 'throttled', minBackoffMs: 5 * MINUTE,
      message: 'Microsoft 365 accepted the login but would not open the mailbox ("authenticated but not connected"): usually too many connections in a short time. Sync waits several minutes and keeps one long-lived connection.',
    }),
  },
  {
    // Gmail's limit of about 15 connections per user, shared with phones and desktop clients (B36)
    test: (_e, t) => /too many simultaneous connections|too many connections|maximum number of connections/i.test(t),
    result: () => ({
      state: 'throttled', code: 'too_many_connections', minBackoffMs: MINUTE,
      message: 'The provider refuses more connections for this account ("too many simultaneous connections"): the user\'s other mail apps and devices count too. mailsync uses one connection, waits and tries again.',
    }),
  },
  {
    // "* BYE" as the greeting (B39 C): the server is busy, not broken
    test: (e, t) => /server busy|try (again )?later|too busy/i.test(`${e.reason ?? ''} ${t}`),
    result: (e) => ({ state: 'unreachable', code: 'server_busy', minBackoffMs: 0, message: `The mail server said it is busy and closed the connection${e.reason ? ` ("${e.reason.slice(0, 200)}")` : ''}. Sync retries with backoff.` }),
  },
];

/** "Suggested Backoff Time: 299961 milliseconds" → 299961. */
export function suggestedBackoff(text: string): number | null {
  const m = /backoff time[:=\s]+(\d+)/i.exec(text);
  return m ? Number(m[1]) : null;
}

/** Whether a login failed because the server refused the credentials (not a network fault). */
export function isAuthRefusal(err: unknown): boolean {
  const e = (err ?? {}) as ErrorLike;
  return !!e.authenticationFailed || e.serverResponseCode === 'AUTHENTICATIONFAILED';
}

interface SessionHints {
  throttleMs: number | null;
}

const hintsOf = new WeakMap<ImapFlow, SessionHints>();

/**
 * A logger for imapflow that also notices its "Throttling detected" entries: when Microsoft
 * follows the throttle reply with BYE, the error the caller sees is a plain closed connection,
 * and only this entry still carries the suggested wait.
 */
export function imapLogger(log: Logger): { logger: Logger; attach: (client: ImapFlow) => void } {
  const hints: SessionHints = { throttleMs: null };
  const logger = new Proxy(log, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (prop !== 'warn' || typeof value !== 'function') return value;
      return (obj: unknown, ...rest: unknown[]) => {
        const delay = obj && typeof obj === 'object' ? (obj as { throttleDelay?: unknown }).throttleDelay : undefined;
        if (typeof delay === 'number' && delay > 0) hints.throttleMs = Math.max(hints.throttleMs ?? 0, delay);
        return (value as (...a: unknown[]) => unknown).call(target, obj, ...rest);
      };
    },
  });
  return { logger, attach: (client) => hintsOf.set(client, hints) };
}

/** The error a session ended with, plus what the provider said on the way (a throttle hint). */
export function withProviderHints(err: unknown, client: ImapFlow | null): unknown {
  const hints = client ? hintsOf.get(client) : undefined;
  if (!hints?.throttleMs) return err;
  const e = (err ?? {}) as ErrorLike;
  if (e.code === 'ETHROTTLE') return err;
  return { message: e.message, responseText: e.responseText, code: 'ETHROTTLE', throttleReset: hints.throttleMs };
}
