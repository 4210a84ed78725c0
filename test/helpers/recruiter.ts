import crypto from 'node:crypto';
import { appendMessage, buildMessage, createMailbox, dovecotEnv, type Account } from './dovecot.js';
import { waitUntil, type ReceivedWebhook, type RunningDaemon } from './daemon.js';
import { BODY_MARKER } from './log-capture.js';

/**
 * A recruiter, a candidate and one ATS thread, as the reliability tests need them: the
 * original sent by the ATS (Message-ID in the ATS domain) and the candidate's replies. Their
 * bodies carry BODY_MARKER, which no daemon log may show.
 */

export const CANDIDATE = 'pat.candidate@example.org';

export function atsOriginal(recruiter: string, tag = crypto.randomBytes(4).toString('hex')): { raw: string; messageId: string } {
  const messageId = `<int-${tag}@ats.example.net>`;
  const raw = buildMessage({ from: `Robin Recruiter <${recruiter}>`, to: `Pat Candidate <${CANDIDATE}>`, subject: `Interview ${tag}`, messageId, text: `When are you free? (${BODY_MARKER})` });
  return { raw, messageId };
}

export function candidateReply(recruiter: string, parentId: string, label: string): { raw: string; messageId: string } {
  const messageId = `<${label}-${crypto.randomBytes(4).toString('hex')}@example.org>`;
  const raw = buildMessage({ from: `Pat Candidate <${CANDIDATE}>`, to: recruiter, subject: 'Re: Interview', messageId, inReplyTo: parentId, references: parentId, text: `Reply ${label}. (${BODY_MARKER})` });
  return { raw, messageId };
}

/** Registers user u1 with candidate c1 and grants consent for `login` at host:port; waits until live. */
export async function consentAndGoLive(d: RunningDaemon, login: Account, server: { host: string; port: number }, userId = 'u1'): Promise<void> {
  const put = await d.api('PUT', `/v1/users/${userId}`, { body: { email: login.address, name: 'Robin Recruiter' } });
  if (put.status !== 200) throw new Error(`PUT user: ${put.status}`);
  await d.api('PUT', '/v1/candidates/c1', { body: { emails: [CANDIDATE], name: 'Pat' } });
  const consent = await d.api('PUT', `/v1/users/${userId}/mailbox`, {
    actingUser: userId,
    body: { imap: { host: server.host, port: server.port, secure: false, auth: { user: login.user, pass: login.pass } }, syncSince: '2020-01-01T00:00:00Z' },
  });
  if (consent.status !== 202) throw new Error(`consent: ${consent.status} ${JSON.stringify(consent.body)}`);
  await waitUntil(async () => (await mailboxState(d, userId)) === 'live', 'the mailbox to be live', 20_000);
}

export async function mailboxState(d: RunningDaemon, userId = 'u1'): Promise<string> {
  return (await d.api<{ state: string }>('GET', `/v1/users/${userId}/mailbox`, { actingUser: userId })).body.state;
}

export const messageIdOf = (w: ReceivedWebhook): string | undefined => (w.body.data.message as { messageId?: string } | undefined)?.messageId;

/** message.created events in the change feed for one Message-ID. */
export async function feedEventsFor(d: RunningDaemon, messageId: string): Promise<string[]> {
  const all: Array<{ id: string; type: string; data: { message?: { messageId: string } } }> = [];
  let after = '0';
  for (;;) {
    const page = await d.api<{ events: typeof all; nextCursor: string }>('GET', `/v1/events?after=${after}&limit=1000`);
    all.push(...page.body.events);
    if (page.body.events.length < 1000) break;
    after = page.body.nextCursor;
  }
  return all.filter((e) => e.type === 'message.created' && e.data.message?.messageId === messageId).map((e) => e.id);
}

/** A fresh mailbox on the shared Dovecot with one ATS original in Sent. */
export async function recruiterWithThread(prefix: string) {
  const login = await createMailbox(prefix);
  const original = atsOriginal(login.address);
  await appendMessage(login, 'Sent', original.raw, ['\\Seen']);
  return { login, env: dovecotEnv(), original };
}
