import nodemailer from 'nodemailer';
import type Mail from 'nodemailer/lib/mailer';
import type { SMTPPoolOptions, SMTPPoolSentMessageInfo } from 'nodemailer/lib/smtp-pool';

/**
 * The one place that turns "send as this account" into a nodemailer transport. Password
 * logins and OAuth2 access tokens (XOAUTH2) both end here; whoever refreshes tokens passes the
 * current one in `auth.accessToken`.
 */

export type RelayAuth = { user: string; pass: string } | { user: string; accessToken: string } | null;

/** A mail server the relay sends through, with the login to use there. */
export interface RelayTarget {
  /** Identifies the account and its settings: transports are pooled per key. */
  key: string;
  host: string;
  port: number;
  /** Implicit TLS (465); otherwise STARTTLS, required unless plaintext is allowed. */
  secure: boolean;
  auth: RelayAuth;
}

export interface TransportSettings {
  allowPlaintext: boolean;
  tlsCa: Buffer | null;
  connectTimeoutMs: number;
  socketTimeoutMs: number;
  maxConnections: number;
}

export type SmtpTransport = Mail<SMTPPoolSentMessageInfo, SMTPPoolOptions>;

export function createSmtpTransport(target: RelayTarget, s: TransportSettings): SmtpTransport {
  const auth = !target.auth ? undefined : 'pass' in target.auth
    ? { user: target.auth.user, pass: target.auth.pass }
    : { type: 'OAuth2' as const, user: target.auth.user, accessToken: target.auth.accessToken };
  return nodemailer.createTransport({
    pool: true,
    host: target.host,
    port: target.port,
    secure: target.secure,
    // without implicit TLS a password must not cross the network in clear: STARTTLS is required
    // unless the operator allowed plaintext for a trusted server
    requireTLS: !target.secure && !s.allowPlaintext,
    auth,
    tls: s.tlsCa ? { ca: s.tlsCa } : {},
    maxConnections: Math.max(1, s.maxConnections),
    // A connection dropped mid-send is retried once by the pool at once; anything else comes
    // back to the relay queue, which keeps the retry schedule and the record of attempts.
    maxRequeues: 1,
    connectionTimeout: s.connectTimeoutMs,
    greetingTimeout: s.connectTimeoutMs,
    socketTimeout: s.socketTimeoutMs,
    logger: false,
  });
}
