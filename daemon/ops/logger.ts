import pino, { type Logger } from 'pino';

/**
 * The one redact list: anything that can hold a secret or mail content is censored wherever
 * it appears in a log object, so no other code needs to remember to leave it out.
 */
export const SECRET_KEYS = [
  // credentials and keys: mailbox logins, OAuth2, API and metrics tokens, webhook and OAuth client secrets, the master key
  'pass', 'password', 'accessToken', 'refreshToken', 'access_token', 'refresh_token', 'authorization', 'secret', 'token', 'tokens',
  'metricsToken', 'clientSecret', 'client_secret', 'sealedCredentials', 'masterKey',
  // mail content
  'text', 'html', 'source', 'raw', 'body',
];
export const REDACT_PATHS = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`, `*.*.*.${k}`]).concat(['req.headers.authorization', 'req.headers.cookie', 'req.headers["x-mailsync-signature"]']);

export function createLogger(opts: { level: string; pretty: boolean }, destination?: pino.DestinationStream): Logger {
  const base: pino.LoggerOptions = {
    level: opts.level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { service: 'mailsync' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (opts.pretty && !destination) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:standard' } } });
  }
  return destination ? pino(base, destination) : pino(base);
}
