/**
 * What the relay does with a mail server's answer, as data: each row matches an error and
 * says whether to try again later (`defer`) or give up (`fail`). Rows are checked in order;
 * the first match wins. RFC 5321 §4.2.1 makes 4yz transient and 5yz permanent; the rows
 * before the generic ones are the known exceptions.
 */

export type ReplyAction = 'defer' | 'fail';

export interface SmtpFailure {
  /** nodemailer's error code (ECONNECTION, EAUTH, EENVELOPE, ...), if any. */
  code?: string | undefined;
  /** The SMTP reply code, if the server answered. */
  responseCode?: number | undefined;
  /** The server's reply text. */
  response?: string | undefined;
}

interface ReplyRule {
  why: string;
  action: ReplyAction;
  match: (f: SmtpFailure) => boolean;
}

const enhanced = (f: SmtpFailure): string | null => /\b([245]\.\d{1,3}\.\d{1,3})\b/.exec(f.response ?? '')?.[1] ?? null;

export const REPLY_RULES: readonly ReplyRule[] = [
  // RFC 5321 §4.5.3.1.10: "552 too much mail data" on RCPT for a full mailbox should be treated
  // as the temporary 452; servers still send it with the enhanced code 5.2.2 (mailbox full).
  { why: 'mailbox full (552 5.2.2 is temporary by RFC 5321)', action: 'defer', match: (f) => f.responseCode === 552 && enhanced(f) === '5.2.2' },
  // 503 is a session out of step (a pooled connection gone stale), not a verdict on the message
  { why: 'bad sequence of commands', action: 'defer', match: (f) => f.responseCode === 503 },
  { why: 'temporary authentication failure', action: 'defer', match: (f) => f.responseCode === 454 },
  // A refused password does not get better by retrying: the user must give mailsync a new one.
  { why: 'the server refused the login', action: 'fail', match: (f) => f.code === 'EAUTH' && (f.responseCode ?? 535) >= 500 },
  { why: 'no credentials for a server that requires them', action: 'fail', match: (f) => f.code === 'ENOAUTH' },
  { why: 'temporary failure (4xx)', action: 'defer', match: (f) => !!f.responseCode && f.responseCode >= 400 && f.responseCode < 500 },
  { why: 'permanent failure (5xx)', action: 'fail', match: (f) => !!f.responseCode && f.responseCode >= 500 && f.responseCode < 600 },
  {
    why: 'connection, DNS, TLS or timeout problem',
    action: 'defer',
    match: (f) => ['ECONNECTION', 'ETIMEDOUT', 'ESOCKET', 'EDNS', 'ETLS', 'EPROTOCOL', 'ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE'].includes(f.code ?? ''),
  },
  { why: 'unknown failure', action: 'defer', match: () => true },
];

export function classifyFailure(f: SmtpFailure): { action: ReplyAction; why: string } {
  const rule = REPLY_RULES.find((r) => r.match(f))!;
  return { action: rule.action, why: rule.why };
}

/** One line for a person (logs, events): the server's reply when there is one. No secrets: replies never echo a password. */
export function describeFailure(f: SmtpFailure & { message?: string }): string {
  if (f.response) return f.response.replace(/\s+/g, ' ').trim().slice(0, 300);
  return `${f.code ? `${f.code}: ` : ''}${(f.message ?? 'failed').replace(/\s+/g, ' ').trim()}`.slice(0, 300);
}

/**
 * Delay before the next attempt after `attempts` failed ones, or null when the schedule is
 * used up. Each delay is shortened by up to 10 % at random so messages that failed together
 * (a provider outage) do not all come back in the same second.
 */
export function nextRetryDelayMs(delaysSeconds: readonly number[], attempts: number, random: () => number = Math.random): number | null {
  const d = delaysSeconds[attempts - 1];
  if (d === undefined) return null;
  return Math.round(d * 1000 * (1 - 0.1 * random()));
}
